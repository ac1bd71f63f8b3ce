"""Check that a head and a tail compose to the full model, the way production runs them (ONNX Runtime, CPU)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from common.errors import UnprocessableModel

# Float32 results of one graph, fused differently on the two sides of a cut, differ by rounding that grows with the
# values involved: an absolute floor for outputs near zero, plus a share of the output's largest magnitude (an
# untrained inception_v3 gives logits around 1e12, where the absolute 1e-4 alone would refuse every cut).
ABS_TOLERANCE = 1e-4
REL_TOLERANCE = 1e-5

_FEED_TYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Production runs with every optimisation on; fusions may differ across the cut, and that difference is
    # exactly what this check has to measure.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _sample(session: ort.InferenceSession, input_shape: tuple[int, ...], batch: int) -> tuple[str, np.ndarray]:
    """The seeded input, at ``batch`` where the batch axis is dynamic and at the model's own batch where it is fixed
    (``torch.onnx.export`` without ``dynamic_axes``, the most common export, fixes it at 1)."""
    feeds = session.get_inputs()
    if len(feeds) != 1 or feeds[0].type not in _FEED_TYPES:
        raise UnprocessableModel("head/tail verification needs a model with exactly one floating-point input")
    declared = feeds[0].shape[0] if feeds[0].shape else None
    rows = declared if isinstance(declared, int) and declared > 0 else batch
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((rows, *input_shape[1:])).astype(_FEED_TYPES[feeds[0].type])
    return feeds[0].name, sample


def _run(session: ort.InferenceSession, feeds: dict[str, np.ndarray], what: str) -> list[np.ndarray]:
    try:
        return [np.asarray(array) for array in session.run(None, feeds)]
    except Exception as exc:  # onnxruntime's own error types: the model, not this service, failed
        raise UnprocessableModel(f"the {what} does not run in ONNX Runtime on the check's input: {exc}") from exc


def reference_outputs(full: onnx.ModelProto, input_shape: tuple[int, ...], batch: int = 2) -> list[np.ndarray]:
    """The full model's outputs on the seeded input; pass them as ``expected`` when checking many cuts of one model."""
    session = _session(full)
    name, sample = _sample(session, input_shape, batch)
    return _run(session, {name: sample}, "full model")


def head_tail_max_abs_diff(
    full: onnx.ModelProto,
    head: onnx.ModelProto,
    tail: onnx.ModelProto,
    input_shape: tuple[int, ...],
    batch: int = 2,
    *,
    expected: Sequence[np.ndarray] | None = None,
) -> float:
    """Largest absolute difference between full(x) and tail(head(x)) over all outputs, for one seeded random x.

    The first axis of ``input_shape`` is replaced by ``batch``, so the dynamic batch axis is exercised too.
    """
    if expected is None:
        expected = reference_outputs(full, input_shape, batch)
    head_session = _session(head)
    name, sample = _sample(head_session, input_shape, batch)
    cut = _run(head_session, {name: sample}, "head")
    sent = {value.name: array for value, array in zip(head_session.get_outputs(), cut, strict=True)}
    tail_session = _session(tail)
    actual = _run(tail_session, {value.name: sent[value.name] for value in tail_session.get_inputs()}, "tail")
    if len(actual) != len(expected):
        raise UnprocessableModel(f"the tail has {len(actual)} outputs but the full model has {len(expected)}")
    diffs = [
        float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(e, dtype=np.float64)), initial=0.0))
        for a, e in zip(actual, expected, strict=True)
    ]
    return max(diffs, default=0.0)


def head_tail_tolerance(expected: Sequence[np.ndarray]) -> float:
    """How far tail(head(x)) may be from ``expected`` = full(x): ABS_TOLERANCE + REL_TOLERANCE * max |full(x)|."""
    scale = max((float(np.max(np.abs(np.asarray(e, dtype=np.float64)), initial=0.0)) for e in expected), default=0.0)
    return ABS_TOLERANCE + REL_TOLERANCE * scale


def check_head_tail(
    full: onnx.ModelProto, head: onnx.ModelProto, tail: onnx.ModelProto, input_shape: tuple[int, ...], label: str
) -> tuple[float, float]:
    """(max |difference|, tolerance) of tail(head(x)) against full(x); UnprocessableModel beyond the tolerance."""
    expected = reference_outputs(full, input_shape)
    difference = head_tail_max_abs_diff(full, head, tail, input_shape, expected=expected)
    tolerance = head_tail_tolerance(expected)
    if not difference <= tolerance:  # also refuses NaN: a model that overflows cannot be checked
        raise UnprocessableModel(
            f"cutting at {label} changes the output by {difference:.3g}, more than float32 rounding explains "
            f"({tolerance:.3g} for outputs up to {(tolerance - ABS_TOLERANCE) / REL_TOLERANCE:.3g}); "
            "this split point cannot be used"
        )
    return difference, tolerance


def seeded_outputs(model: onnx.ModelProto, input_shape: tuple[int, ...], what: str) -> dict[str, np.ndarray]:
    """``model``'s outputs by name on the seeded input the checks above feed (one session, as production runs it)."""
    session = _session(model)
    name, sample = _sample(session, input_shape, 2)
    names = [value.name for value in session.get_outputs()]
    return dict(zip(names, _run(session, {name: sample}, what), strict=True))


def outputs_by_name(model: onnx.ModelProto, feeds: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """``model``'s outputs on ``feeds``, as production's session options compute them."""
    session = _session(model)
    names = [value.name for value in session.get_outputs()]
    return dict(zip(names, _run(session, feeds, what), strict=True))
