"""Creating a split: cut the registered graph, verify head then tail equals the whole, write the bundle.

The one place that makes manifests. A split point may send one tensor or two (a pair cut, ``point.tensors``). The
clip ranges at 1..8 bits are, by default, calibrated: the model's stored calibration (``POST
/api/models/{id}/calibrate``) when it covers the point and bit width, else a calibration of this point alone, made
now on the bundled photos, with its fidelity measured on the held-out ones; ``"clip": "calibrated"`` insists on the
stored one, ``"clip": "graph"`` takes the bounds the graph proves, ``[lo, hi]`` is taken as given. New splits use
zero-exact affine codes and Zstandard coding of the codes unless the request says otherwise.
"""

from __future__ import annotations

import difflib

import onnx
from pydantic import ValidationError

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import (
    MAX_TENSOR_NAME_BYTES,
    BitsVariant,
    Fidelity,
    Quantization,
    Scheme,
    SplitManifest,
    TensorRange,
    TensorSpec,
    Verification,
    sha256_hex,
)
from common.quantization import QUANTIZED_BITS, SUPPORTED_BITS, validate_range
from model_splitter.graph.cutting import cut_model
from model_splitter.graph.inputs import real_inputs
from model_splitter.graph.labels import label_tensors
from model_splitter.graph.verification import check_head_tail
from model_splitter.quantize.calibration import DEFAULT_METHOD
from model_splitter.quantize.code_verification import code_graphs_for
from model_splitter.quantize.default_ranges import default_clip
from model_splitter.quantize.fidelity import fidelity_table
from model_splitter.quantize.images import calibration_sets
from model_splitter.records import Allocation, ModelRecord, Progress, SplitPoint, SplitRequest, no_progress
from model_splitter.store.registry import HEAD_CODES_FILE, TAIL_CODES_FILE, Registry
from model_splitter.store.samples import calibration_photos


class NotCalibrated(UnprocessableModel):
    code = "not_calibrated"


def find_split_point(record: ModelRecord, name: str) -> SplitPoint:
    for point in record.split_points:
        if name in (point.label, point.tensor):
            return point
    labels = [point.label for point in record.split_points]
    close = difflib.get_close_matches(name, labels, n=3)
    hint = f" Did you mean {', '.join(repr(label) for label in close)}?" if close else ""
    shown = f"{', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''} ({len(labels)} in all, in network order)"
    raise InvalidArgument(
        f"{name!r} is not a split point of model {record.id}.{hint} Use a label or tensor name from "
        f"GET /api/models/{record.id}/split-points: {shown}"
    )


def check_request(request: SplitRequest) -> None:
    if request.bits not in SUPPORTED_BITS:
        raise InvalidArgument(f"bits must be one of {', '.join(map(str, SUPPORTED_BITS))}, got {request.bits}")
    if request.bits in request.alternatives:
        raise InvalidArgument(f"bits {request.bits} is the split's own width: list only other widths in alternatives")
    if request.allocation == "rate-distortion":
        if request.bits not in QUANTIZED_BITS:
            raise InvalidArgument(f"bits per channel need 1..8 bits, got {request.bits}")
        if request.clip not in (None, "calibrated"):
            raise InvalidArgument(
                "bits per channel come from a calibration (the model's, or one made now): leave clip out, or "
                'make it "calibrated"'
            )
        if request.scheme == "clip":
            raise InvalidArgument("bits per channel are affine codes: leave the scheme out or make it affine")
    if isinstance(request.clip, tuple):
        lo, hi = request.clip
        try:
            validate_range(lo, hi)  # as the frame carries it: float32, lo < hi also after rounding
        except InvalidArgument as exc:
            raise InvalidArgument(f"clip must be [lo, hi] with lo < hi, got [{lo}, {hi}]: {exc.message}") from None


def create_split(
    registry: Registry, model_id: str, request: SplitRequest, progress: Progress = no_progress
) -> SplitManifest:
    check_request(request)
    record = registry.get_model(model_id)
    allocation = _allocation(registry, record, request)
    point = find_split_point(record, request.split_point)
    model = onnx.load(str(registry.model_onnx_path(model_id)))
    tensors = point.tensors or [point.tensor]
    for name in tensors:
        if len(name.encode()) > MAX_TENSOR_NAME_BYTES:
            raise UnprocessableModel(
                f"the cut tensor {name[:60]!r}... at {point.label} has a {len(name.encode())}-byte name; a frame "
                f"carries names of at most {MAX_TENSOR_NAME_BYTES} UTF-8 bytes: pick another split point, or "
                "export the model with shorter tensor names"
            )
    progress(f"cutting at {point.label}")
    head, tail = cut_model(model, tensors, input_shape=tuple(record.input_shape))
    progress("checking that head and tail answer as the model does")
    difference, tolerance = check_head_tail(model, head, tail, tuple(record.input_shape), point.label)
    head_bytes = head.SerializeToString()
    tail_bytes = tail.SerializeToString()
    widths = [request.bits, *request.alternatives]
    quantized = [bits for bits in widths if bits in QUANTIZED_BITS]
    scheme = _scheme(registry, record, request, allocation) if quantized else "clip"  # no codes: as such manifests were
    by_bits = _ranges(registry, record, model, point, request, widths, scheme, allocation, progress)
    ranges, fidelity = by_bits[request.bits]
    alternatives = [
        BitsVariant(bits=bits, ranges=by_bits[bits][0], fidelity=by_bits[bits][1]) for bits in request.alternatives
    ]
    labels = {tensors[0]: point.label} if len(tensors) == 1 else label_tensors(model, tensors)
    shapes = point.shapes or [point.shape]
    output = model.graph.output[0].name
    try:
        manifest = SplitManifest(
            model_id=record.id,
            model_name=record.name,
            model_sha256=record.sha256,
            weights_trained=record.weights_trained,
            split_point=point.label,
            input=TensorSpec(name=_input_name(model), shape=[1, *record.input_shape[1:]]),
            outputs=record.outputs
            or [TensorSpec(name=output, shape=[1, record.num_classes] if record.num_classes else [1])],
            cut=[
                TensorSpec(name=name, label=labels[name], shape=shape, dtype=point.dtype)
                for name, shape in zip(tensors, shapes, strict=True)
            ],
            quantization=Quantization(
                bits=request.bits,
                method="calibrated" if fidelity is not None else "fixed",
                ranges=ranges,
                scheme=scheme,
                entropy=request.entropy if quantized else "none",
                alternatives=alternatives or None,
            ),
            preprocessing=record.preprocessing,
            postprocessing=record.postprocessing.model_copy(update={"labels": registry.model_labels(record.id)}),
            verification=Verification(
                head_tail_max_abs_diff=difference,
                head_tail_tolerance=tolerance,
                export_max_abs_diff=record.export_max_abs_diff,
                fidelity=fidelity,
            ),
            head_sha256=sha256_hex(head_bytes),
            tail_sha256=sha256_hex(tail_bytes),
        )
    except ValidationError as exc:  # anything the manifest's own checks refuse could never be served
        raise UnprocessableModel(f"this split cannot be served: {exc.errors()[0]['msg']}") from exc
    return save_with_code_graphs(registry, manifest, (head, tail), (head_bytes, tail_bytes), record, progress)


def save_with_code_graphs(
    registry: Registry,
    manifest: SplitManifest,
    parts: tuple[onnx.ModelProto, onnx.ModelProto],
    files: tuple[bytes, bytes],
    record: ModelRecord,
    progress: Progress,
) -> SplitManifest:
    """Saves the split with its checked code graphs (the quantizer in the head, the dequantizer in the tail)."""
    progress("putting the quantizer inside the head and the dequantizer inside the tail")
    graphs = code_graphs_for(*parts, manifest, tuple(record.input_shape))
    extra = {}
    if graphs is not None:
        manifest = manifest.model_copy(update={"code_graphs": graphs.record})
        extra = {HEAD_CODES_FILE: graphs.head, TAIL_CODES_FILE: graphs.tail}
    progress("saving")
    # model_copy skips validation: the manifest is rebuilt from its JSON so that its own checks run.
    checked = SplitManifest.model_validate(manifest.model_dump(mode="json"))
    return registry.save_split(checked.with_id(), *files, extra)


Measured = tuple[list[TensorRange], Fidelity | None]


def _allocation(registry: Registry, record: ModelRecord, request: SplitRequest) -> Allocation:
    """The request's allocation; else that of the model's calibration when the ranges may come from it (as the
    scheme); else uniform."""
    if request.allocation is not None:
        return request.allocation
    calibration = registry.get_calibration(record.id) if request.clip in (None, "calibrated") else None
    uses_codes = request.bits in QUANTIZED_BITS and request.scheme in (None, "affine")
    return calibration.allocation if calibration is not None and uses_codes else "uniform"


def _scheme(registry: Registry, record: ModelRecord, request: SplitRequest, allocation: Allocation) -> Scheme:
    """The request's scheme; else that of the model's calibration when the ranges may come from it; else affine."""
    if request.scheme is not None:
        return request.scheme
    if allocation == "rate-distortion":
        return "affine"
    calibration = registry.get_calibration(record.id) if request.clip in (None, "calibrated") else None
    return calibration.scheme if calibration is not None else "affine"


def _ranges(
    registry: Registry,
    record: ModelRecord,
    model: onnx.ModelProto,
    point: SplitPoint,
    request: SplitRequest,
    widths: list[int],
    scheme: Scheme,
    allocation: Allocation,
    progress: Progress = no_progress,
) -> dict[int, Measured]:
    """Ranges (and fidelity where measured) of every width of the split, as the module docstring says."""
    tensors = point.tensors or [point.tensor]
    out: dict[int, Measured] = {}
    fresh: list[int] = []
    clips = [request.clip if isinstance(request.clip, tuple) else default_clip(model, name) for name in tensors]
    given: Measured = ([TensorRange(name=n, lo=c[0], hi=c[1]) for n, c in zip(tensors, clips, strict=True)], None)
    for bits in widths:
        # 16 and 32 bits use no range; a stored calibration still says what their fidelity is.
        codes: Scheme | None = scheme if bits in QUANTIZED_BITS else None
        if request.clip == "graph" or isinstance(request.clip, tuple):
            out[bits] = given
        elif request.clip == "calibrated":
            out[bits] = calibrated_ranges(registry, record, point, bits, codes, allocation)
        else:
            stored = stored_ranges(registry, record, point, bits, codes, allocation)
            if stored is not None:
                out[bits] = stored
            elif bits in QUANTIZED_BITS:
                fresh.append(bits)
            else:
                out[bits] = given
    if fresh:
        progress(f"calibrating {point.label} at {', '.join(map(str, fresh))} bits on the bundled photos")
        measured = calibrate_point(model, record, point, fresh, scheme, allocation == "rate-distortion")
        for bits in fresh:
            out[bits] = measured.get(bits) or given
    return out


def calibrated_ranges(
    registry: Registry,
    record: ModelRecord,
    point: SplitPoint,
    bits: int,
    scheme: Scheme | None,
    allocation: Allocation = "uniform",
) -> Measured:
    """The stored calibrated ranges of ``point`` at ``bits`` and the fidelity measured with them."""
    hint = f"calibrate first: POST /api/models/{record.id}/calibrate"
    calibration = registry.get_calibration(record.id)
    if calibration is None:
        raise NotCalibrated(f"model {record.id} has no calibrated ranges yet; {hint}")
    found = stored_ranges(registry, record, point, bits, scheme, allocation)
    if found is not None:
        return found
    if scheme is not None and calibration.allocation != allocation:
        raise NotCalibrated(
            f"the calibration of model {record.id} spread its bits {calibration.allocation}, not {allocation}; "
            f"{hint} with allocation={allocation}, or ask for allocation {calibration.allocation}"
        )
    if scheme is not None and scheme != calibration.scheme:
        raise NotCalibrated(
            f"the calibration of model {record.id} measured {calibration.scheme} codes, not {scheme}; {hint} "
            f"with scheme={scheme}, or leave the scheme out"
        )
    covered = ", ".join(map(str, calibration.bits))
    raise NotCalibrated(
        f"the calibration of model {record.id} has no range for {point.label} at {bits} bits (it covers bits "
        f"{covered}); {hint} with bits={bits}"
    )


def stored_ranges(
    registry: Registry,
    record: ModelRecord,
    point: SplitPoint,
    bits: int,
    scheme: Scheme | None,
    allocation: Allocation = "uniform",
) -> Measured | None:
    """The model's stored calibration of ``point`` at ``bits`` when it exists and used ``scheme`` (None: any width
    without codes, where neither the scheme nor the ``allocation`` matters)."""
    calibration = registry.get_calibration(record.id)
    if calibration is None:
        return None
    if scheme is not None and (scheme != calibration.scheme or allocation != calibration.allocation):
        return None
    entry = calibration.points.get(point.label)
    if entry is None or bits not in entry.bits:
        return None
    measured = entry.bits[bits]
    return list(measured.ranges), measured.fidelity(calibration.images, calibration.fit_images)


def calibrate_point(
    model: onnx.ModelProto,
    record: ModelRecord,
    point: SplitPoint,
    widths: list[int],
    scheme: Scheme,
    allocated: bool = False,
) -> dict[int, Measured]:
    """Ranges for ``point`` alone at each width (``allocated``: a width per channel), fitted on the bundled photos
    and measured on the held-out ones (nothing for a cut that is not floating point: there is nothing to calibrate)."""
    images = calibration_sets(None, record.preprocessing, calibration_photos())
    table = fidelity_table(
        model, record, images, widths, DEFAULT_METHOD, scheme=scheme, labels=[point.label], allocated=allocated
    )
    if not table:
        return {}
    return {bits: (list(m.ranges), m.fidelity) for bits, m in table[0].by_bits.items()}


def _input_name(model: onnx.ModelProto) -> str:
    return real_inputs(model.graph)[0]
