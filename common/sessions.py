"""ONNX Runtime sessions: created once per model, on the best execution provider that really works.

A provider listed by ``get_available_providers`` can still fail at run time (a CUDA build on a machine without
a driver, TensorRT without its libraries), so each candidate is verified by running the model once on zeros;
the first that runs is kept and reported, the next is tried otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from common.errors import UnprocessableModel

logger = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_reported_missing: set[str] = set()
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass(frozen=True)
class SessionOptions:
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    intra_op_threads: int = 0
    allow_spinning: bool = True
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)
    tensorrt_max_batch: int = 16


@dataclass
class LoadedSession:
    session: ort.InferenceSession
    provider: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self.session.run(self.output_names, feeds)
        return outputs

    @property
    def dynamic_batch(self) -> bool:
        """Every input's first axis is open, so inputs of several requests can run stacked as one."""
        return all(value.shape and not isinstance(value.shape[0], int) for value in self.session.get_inputs())


def resolve_providers(preference: tuple[str, ...]) -> list[str]:
    """Preference list (aliases or full names) filtered to what this onnxruntime build offers, CPU always last."""
    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for name in preference:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            if full not in _reported_missing:  # once per process: every session would say it again
                _reported_missing.add(full)
                logger.warning(
                    "%s is not in this onnxruntime build (it offers %s); its options are not used",
                    full,
                    ", ".join(sorted(available)),
                )
            continue
        if full not in chosen:
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _session_options(options: SessionOptions) -> ort.SessionOptions:
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.intra_op_num_threads = options.intra_op_threads
    session_options.inter_op_num_threads = 1
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
    session_options.log_severity_level = 3
    return session_options


def _zeros_for(session: ort.InferenceSession, shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Zeros for every input: a dynamic dimension takes its size from ``shapes`` (what the split declares), else 1.

    A model with dynamic height and width (a YOLO export) cannot run on a 1x1 image, but runs at the size the
    manifest says it is served at.
    """
    feeds: dict[str, np.ndarray] = {}
    for node_arg in session.get_inputs():
        known = list(shapes.get(node_arg.name, ()))
        shape = [
            dim if isinstance(dim, int) and dim > 0 else (known[i] if i < len(known) and known[i] > 0 else 1)
            for i, dim in enumerate(node_arg.shape)
        ]
        feeds[node_arg.name] = np.zeros(shape, dtype=_NUMPY_TYPES.get(node_arg.type, np.float32))
    return feeds


def options_in_force(options: SessionOptions) -> dict[str, dict[str, str]]:
    """The provider options that apply here: those of the preferred providers this onnxruntime build offers."""
    return {name: dict(options.provider_options.get(name, {})) for name in resolve_providers(options.providers)}


def tensorrt_profile(shapes: Mapping[str, Sequence[int]], max_batch: int) -> dict[str, str]:
    """TensorRT's optimisation profile from the shapes a split is served at: batch 1 to ``max_batch``, the other
    dimensions as declared (so TensorRT builds one engine for them instead of guessing)."""

    def spec(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in [batch, *shape[1:]])}" for name, shape in shapes.items())

    return {
        "trt_profile_min_shapes": spec(1),
        "trt_profile_opt_shapes": spec(1),
        "trt_profile_max_shapes": spec(max_batch),
    }


def create_session(
    model: bytes | str, options: SessionOptions, shapes: Mapping[str, Sequence[int]] | None = None
) -> LoadedSession:
    """Create a session on the first provider in ``options.providers`` that loads and runs the model.

    ``shapes`` gives input shapes to test-run at (by input name), for inputs with dynamic dimensions.
    """
    failures: list[str] = []
    for provider in resolve_providers(options.providers):
        chain: list[Any] = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        if provider in options.provider_options:
            settings = dict(options.provider_options[provider])
            if provider == "TensorrtExecutionProvider" and shapes:
                settings |= tensorrt_profile(shapes, options.tensorrt_max_batch)
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in settings:
                    Path(settings[key]).mkdir(parents=True, exist_ok=True)
            chain[0] = (provider, settings)
        try:
            session = ort.InferenceSession(model, sess_options=_session_options(options), providers=chain)
            session.run(None, _zeros_for(session, shapes or {}))
        except Exception as exc:  # onnxruntime raises its own untyped errors for every provider failure
            logger.warning("execution provider %s failed its test run: %s", provider, exc)
            failures.append(f"{provider}: {exc}")
            continue
        in_use = session.get_providers()[0]
        return LoadedSession(
            session=session,
            provider=in_use,
            input_names=[i.name for i in session.get_inputs()],
            output_names=[o.name for o in session.get_outputs()],
        )
    raise UnprocessableModel("no execution provider could run the model: " + "; ".join(failures))
