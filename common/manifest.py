"""The split manifest: everything robot and edge need to know about a split, besides the two ONNX files.

A manifest is content-addressed: its id is the sha256 of its canonical JSON without the id, and that JSON
holds the sha256 of head.onnx, tail.onnx and the full model. So an id names exactly one pair of graphs, one
cut, one quantization and one preprocessing, and robot and edge can refuse anything that does not hash right.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import Field, StrictInt, ValidationError, field_validator, model_validator

from common.errors import BadRequest, InvalidArgument
from common.manifest_fidelity import Fidelity as Fidelity
from common.manifest_fidelity import TaskFidelity as TaskFidelity
from common.mixed_widths import validate_widths
from common.model_io import Frozen as _Frozen
from common.model_io import Postprocessing, Preprocessing
from common.model_io import is_none as _is_none
from common.quantization import validate_bits, validate_channel_ranges, validate_range

MANIFEST_FORMAT_VERSION = 1
SPLIT_ID_HEX_LENGTH = 64
# The wire frame names each tensor in at most this many UTF-8 bytes (docs/wire-format.md).
MAX_TENSOR_NAME_BYTES = 255
_HEX = frozenset("0123456789abcdef")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def is_hex(text: str, length: int | None = None) -> bool:
    """Lowercase hex of ``length`` characters (any non-empty length up to 64 when None): safe as a file name."""
    wanted = len(text) == length if length is not None else 0 < len(text) <= SPLIT_ID_HEX_LENGTH
    return wanted and _HEX.issuperset(text)


class TensorSpec(_Frozen):
    name: str
    label: str = ""
    shape: list[int] = Field(description="shape at batch 1; dimension 0 is the batch axis")
    dtype: str = "float32"

    @field_validator("name")
    @classmethod
    def _fits_a_frame(cls, name: str) -> str:
        size = len(name.encode())
        if not 0 < size <= MAX_TENSOR_NAME_BYTES:
            raise ValueError(f"tensor name {name[:60]!r}... is {size} UTF-8 bytes; a frame carries 1 to 255")
        return name

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class TensorRange(_Frozen):
    """The clip range of one cut tensor. With ``channel_lo``/``channel_hi`` (one value per index of axis 1) the
    tensor is quantized per channel (wire kind 5) and ``lo``/``hi`` are the smallest lo and largest hi, for people.

    Fields left unset are left out of the JSON, so manifests without them keep their ids.
    """

    name: str
    lo: float
    hi: float
    channel_lo: list[float] | None = Field(None, exclude_if=_is_none, description="per-channel lo (axis 1)")
    channel_hi: list[float] | None = Field(None, exclude_if=_is_none, description="per-channel hi (axis 1)")
    channel_bits: list[StrictInt] | None = Field(
        None,
        exclude_if=_is_none,
        description="per-channel widths 1..8 (axis 1; wire kind 8), averaging the split's bits; the channel "
        "ranges are each channel's range at its own width",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TensorRange:
        try:
            validate_range(self.lo, self.hi)  # finite, lo < hi, and both still so as the float32 the wire carries
        except InvalidArgument as exc:
            raise ValueError(f"clip range of {self.name}: {exc.message}") from None
        if (self.channel_lo is None) != (self.channel_hi is None):
            raise ValueError(f"clip range of {self.name}: give both channel_lo and channel_hi, or neither")
        if self.channel_lo is not None and self.channel_hi is not None:
            try:
                validate_channel_ranges(self.channel_lo, self.channel_hi)
            except InvalidArgument as exc:
                raise ValueError(f"clip range of {self.name}: {exc.message}") from None
        if self.channel_bits is not None:
            try:
                validate_widths(self.channel_bits, len(self.channel_lo or []) or None)
            except InvalidArgument as exc:
                raise ValueError(f"clip range of {self.name}: {exc.message}") from None
            if self.channel_lo is None:
                raise ValueError(f"clip range of {self.name}: channel_bits needs channel_lo and channel_hi")
        return self

    def average_bits(self) -> int | None:
        """The bits per value the channel widths average, or None without them."""
        return sum(self.channel_bits) // len(self.channel_bits) if self.channel_bits else None

    @property
    def per_channel(self) -> bool:
        return self.channel_lo is not None


Scheme = Literal["clip", "affine"]
SCHEMES: tuple[Scheme, ...] = ("clip", "affine")
Entropy = Literal["none", "zstd"]


def _is_clip(value: object) -> bool:
    return value == "clip"


def _is_none_coding(value: object) -> bool:
    return value == "none"


class Quantization(_Frozen):
    """How the cut tensors travel. Defaults that older manifests lack (clip codes, no coding) are left out of the
    JSON, so those manifests keep their ids."""

    bits: StrictInt = Field(description="1..8 = uniform quantization, 16 = float16, 32 = float32")
    method: Literal["fixed", "calibrated"] = "fixed"
    ranges: list[TensorRange]
    scheme: Scheme = Field(
        "clip",
        exclude_if=_is_clip,
        description="1..8 bits: 'affine' = zero-exact codes with a zero point (wire kinds 6, 7), "
        "'clip' = codes spread over [lo, hi] (kinds 1, 5)",
    )
    entropy: Entropy = Field(
        "none",
        exclude_if=_is_none_coding,
        description="'zstd': the robot Zstandard-codes a tensor's packed codes whenever that is shorter",
    )

    alternatives: list[BitsVariant] | None = Field(
        None,
        exclude_if=_is_none,
        description="other bit widths a frame of this split may use, each with its ranges and fidelity: a stream "
        "switches between them frame by frame, without a redeploy",
    )

    @model_validator(mode="after")
    def _distinct_widths(self) -> Quantization:
        widths = self.widths()
        if len(set(widths)) != len(widths):
            raise ValueError(f"each bit width of a split appears once, got {widths}")
        names = [entry.name for entry in self.ranges]
        for variant in self.alternatives or []:
            if [entry.name for entry in variant.ranges] != names:
                raise ValueError(f"the {variant.bits}-bit alternative needs ranges for the tensors {names}")
        for bits, ranges in ((self.bits, self.ranges), *((v.bits, v.ranges) for v in self.alternatives or [])):
            for entry in ranges:
                average = entry.average_bits()
                if average is not None and (self.scheme != "affine" or average != bits):
                    raise ValueError(
                        f"the channel widths of {entry.name} average {average} bits: they need affine codes and "
                        f"the width they are given at ({bits} bits)"
                    )
        return self

    def range_of(self, tensor: str) -> TensorRange:
        for entry in self.ranges:
            if entry.name == tensor:
                return entry
        raise KeyError(tensor)

    def widths(self) -> list[int]:
        """Every bit width a frame may use: the split's own first, then the alternatives."""
        return [self.bits, *(variant.bits for variant in self.alternatives or [])]

    def at(self, bits: int) -> Quantization:
        """This quantization at one of its widths (the split's own, or an alternative's bits and ranges)."""
        if bits == self.bits:
            return self
        for variant in self.alternatives or []:
            if variant.bits == bits:
                return self.model_copy(update={"bits": bits, "ranges": variant.ranges, "alternatives": None})
        raise KeyError(bits)


class BitsVariant(_Frozen):
    """One more bit width of a split: its ranges (as ``Quantization.ranges``) and the fidelity measured with them."""

    bits: StrictInt
    ranges: list[TensorRange]
    fidelity: Fidelity | None = Field(None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _supported(self) -> BitsVariant:
        try:
            validate_bits(self.bits)
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None
        return self


Quantization.model_rebuild()


class Verification(_Frozen):
    head_tail_max_abs_diff: float = Field(description="max |tail(head(x)) - full(x)| in fp32 on a random batch")
    # Absent from manifests made before the tolerance scaled with the output (it was 1e-4 then).
    head_tail_tolerance: float | None = Field(
        None, exclude_if=_is_none, description="what the check allowed: 1e-4 + 1e-5 * max |full(x)|"
    )
    export_max_abs_diff: float | None = Field(None, description="max |onnx(x) - torch(x)| at registration")
    fidelity: Fidelity | None = Field(
        None, exclude_if=_is_none, description="measured on calibration images (calibrated splits only)"
    )


def _checked_sha256(value: str) -> str:
    if not is_hex(value, 64):
        raise ValueError(f"{value[:80]!r} is not a sha256 (64 lowercase hex characters)")
    return value


class CodeGraphs(_Frozen):
    """The head and tail with the quantizer inside (codes out, codes in: common/codes.py), as checked when made."""

    head_sha256: str
    tail_sha256: str
    samples: int = Field(description="samples whose in-graph codes equal the numpy codes byte for byte")
    tail_max_abs_diff: float = Field(description="max |tail_q(codes) - tail(dequantize(codes))| on those samples")
    tail_tolerance: float = Field(description="what the check allowed: 1e-4 + 1e-5 * max |tail(x)|")

    @field_validator("head_sha256", "tail_sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        return _checked_sha256(value)


class FineTuning(_Frozen):
    """How the tail of this split was trained for its bit width(s) (the head and the cut are its base split's)."""

    base_split: str = Field(description="the split whose tail was fine-tuned; its head and ranges are this one's")
    bits: list[StrictInt] = Field(description="the widths trained for (several: one tail across widths)")
    steps: int
    learning_rate: float
    anchor: float = Field(0.0, description="the weight of the L2-SP term that keeps the tail near its trained weights")
    samples: int = Field(description="training samples: the fitting images and random crops of them")
    images: Literal["uploaded", "bundled"] = Field(description="where the fitting and held-out images came from")
    first_loss: float = Field(description="mean distillation loss over the first tenth of the steps")
    last_loss: float = Field(description="mean distillation loss over the last tenth of the steps")
    seconds: float = Field(description="training time on the splitter's CPU")
    base_fidelity: Fidelity = Field(description="the base split's tail measured on the same held-out images")
    # The held-out images are other views of the photos the tail trained on; these are other scenes.
    unseen_fidelity: Fidelity | None = Field(
        None,
        exclude_if=_is_none,
        description="the fine-tuned tail on photos of other scenes that no calibration or training used",
    )
    base_unseen_fidelity: Fidelity | None = Field(
        None, exclude_if=_is_none, description="the base split's tail on the same photos of other scenes"
    )


class SplitManifest(_Frozen):
    format_version: int = MANIFEST_FORMAT_VERSION
    id: str = ""
    model_id: str
    model_name: str
    model_sha256: str
    weights_trained: bool
    split_point: str
    input: TensorSpec
    outputs: list[TensorSpec]
    cut: list[TensorSpec]
    quantization: Quantization
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    verification: Verification
    head_sha256: str
    tail_sha256: str
    # Absent from splits at 16/32 bits, from models below opset 13, and from splits made before there were any.
    code_graphs: CodeGraphs | None = Field(None, exclude_if=_is_none)
    # Only on splits whose tail was fine-tuned (POST /api/splits/{id}/fine-tune).
    fine_tuning: FineTuning | None = Field(None, exclude_if=_is_none)

    @field_validator("model_sha256", "head_sha256", "tail_sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        # These become file names on robot and edge (models/<model_sha256>.onnx): never a path.
        return _checked_sha256(value)

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if not is_hex(value):
            raise ValueError(f"model id {value[:80]!r} is not lowercase hex")
        return value

    @field_validator("id")
    @classmethod
    def _split_id(cls, value: str) -> str:
        if value and not is_hex(value, SPLIT_ID_HEX_LENGTH):
            raise ValueError(f"split id {value[:80]!r} is not 64 lowercase hex characters")
        return value

    @model_validator(mode="after")
    def _channel_ranges_fit(self) -> SplitManifest:
        shapes = {spec.name: spec.shape for spec in self.cut}
        for entry in self.quantization.ranges:
            if entry.channel_lo is None:
                continue
            shape = shapes.get(entry.name)
            if shape is None or len(shape) < 2 or len(entry.channel_lo) != shape[1]:
                raise ValueError(
                    f"per-channel ranges of {entry.name} need one value per channel (axis 1) of its cut shape "
                    f"{shape}, got {len(entry.channel_lo)}"
                )
        return self

    @property
    def readable_name(self) -> str:
        """``<model>-<split point>-<bits>b`` (``-tuned`` after it for a fine-tuned tail), anything but letters,
        digits, ``.``, ``-``, ``_`` made ``_``: the name serving engines (Triton, the Open Inference Protocol) know
        the tail by, beside the split id."""
        tuned = "-tuned" if self.fine_tuning is not None else ""
        return _UNSAFE_NAME.sub("_", f"{self.model_name}-{self.split_point}-{self.quantization.bits}b{tuned}")

    def content_id(self) -> str:
        return compute_split_id(self.model_dump(mode="json"))

    def with_id(self) -> SplitManifest:
        return self.model_copy(update={"id": self.content_id()})

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def compute_split_id(manifest: dict[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != "id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def parse_manifest(data: bytes | str) -> SplitManifest:
    """Parse and check a manifest: well-formed, and its id is the hash of its content."""
    try:
        manifest = SplitManifest.model_validate_json(data)
    except ValidationError as exc:
        raise BadRequest(f"manifest.json is not a valid split manifest: {exc.errors()[0]['msg']}") from exc
    if manifest.format_version != MANIFEST_FORMAT_VERSION:
        raise BadRequest(f"manifest format {manifest.format_version} is not supported (this build reads 1)")
    expected = manifest.content_id()
    if manifest.id != expected:
        raise BadRequest(f"manifest id {manifest.id!r} does not match its content (hash {expected})")
    return manifest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_split_id(text: str) -> bool:
    return is_hex(text, SPLIT_ID_HEX_LENGTH)
