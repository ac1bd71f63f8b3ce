"""JSON shapes of the splitter's API."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema, field_validator, model_validator

from common.manifest import Entropy, Fidelity, Scheme, TaskFidelity, TensorRange, TensorSpec
from common.model_io import Postprocessing, Preprocessing
from common.quantization import FLOAT32_MAX, SUPPORTED_BITS


class SplitPoint(BaseModel):
    index: int = Field(description="position in the network, in topological order")
    label: str = Field(description="module path, e.g. layer2.1")
    tensor: str
    shape: list[int]
    dtype: str
    elements: int
    wire_bytes: dict[int, int] = Field(description="bytes on the wire per bit width (32, 16, 8, 4, 2)")
    head_flops_share: float
    head_params_share: float
    tensors: list[str] = Field(
        default_factory=list, description="every tensor the head sends: [tensor] for a single cut, two for a pair"
    )
    shapes: list[list[int]] = Field(default_factory=list, description="the shapes of ``tensors``, at batch 1")

    @model_validator(mode="after")
    def _single_by_default(self) -> SplitPoint:
        # Records written before pair cuts existed name one tensor only.
        if not self.tensors:
            self.tensors = [self.tensor]
            self.shapes = [self.shape]
        return self


class ConstantFolding(BaseModel):
    """What folding constant subgraphs did to the graph before it was analysed and stored."""

    nodes_before: int = Field(description="nodes in the graph as exported or uploaded")
    nodes_after: int = Field(description="nodes in the stored graph (equal to nodes_before when nothing folded)")
    max_abs_diff: float | None = Field(
        None, description="largest output difference between the folded and the original graph on a seeded input"
    )
    kept_original: str | None = Field(None, description="why the original graph was kept although some nodes fold")


class ModelRecord(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    name: str
    sha256: str
    size_bytes: int
    source_format: str
    architecture: str | None
    input_shape: list[int]
    fixed_batch: int | None = Field(
        None,
        description="the batch size the graph is fixed at (no dynamic batch axis: frames carry one image each); "
        "null for a dynamic batch",
    )
    weights_trained: bool
    export_max_abs_diff: float | None
    num_classes: int | None
    opset: int
    created_at: str
    preprocessing: Preprocessing
    postprocessing: Postprocessing = Field(
        default_factory=Postprocessing,
        description="the task and its settings (class names: GET /api/models/{id}/labels); records made before "
        "tasks existed are classifiers",
    )
    outputs: list[TensorSpec] = Field(
        default_factory=list, description="every output: name, shape and type as the model answered one zero image"
    )
    split_points: list[SplitPoint]
    folding: ConstantFolding | None = Field(
        None, description="constant folding before analysis; null for records made before it existed"
    )


class ModelSummary(BaseModel):
    id: str
    name: str
    source_format: str
    architecture: str | None
    input_shape: list[int]
    weights_trained: bool
    created_at: str
    split_point_count: int

    @classmethod
    def of(cls, record: ModelRecord) -> ModelSummary:
        return cls(
            id=record.id,
            name=record.name,
            source_format=record.source_format,
            architecture=record.architecture,
            input_shape=record.input_shape,
            weights_trained=record.weights_trained,
            created_at=record.created_at,
            split_point_count=len(record.split_points),
        )


# A clip bound as the schema states it: the float32 range the frame carries (the validator says so in words).
ClipBound = Annotated[float, WithJsonSchema({"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX})]


# How the bits of a width are spread over a cut tensor: every value at the width, or per channel by
# rate-distortion (model_splitter/quantize/bit_allocation.py).
Allocation = Literal["uniform", "rate-distortion"]


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split_point: str = Field(description="a split point's label (module path) or tensor name")
    bits: StrictInt = Field(
        4, description="1..8 quantized, 16 float16, 32 float32", json_schema_extra={"enum": list(SUPPORTED_BITS)}
    )
    clip: tuple[ClipBound, ClipBound] | Literal["calibrated", "graph"] | None = Field(
        None,
        description='[lo, hi]; "calibrated" for the ranges of POST /api/models/{id}/calibrate; "graph" for the '
        "bounds the graph proves (ReLU6 [0, 6], Sigmoid [0, 1], ReLU [0, ...)), 32 where it proves none; default at "
        "1..8 bits: the model's calibration when it covers the point and bits, else calibrated now on the bundled "
        "photos (fidelity on held-out ones)",
    )
    scheme: Scheme | None = Field(
        None,
        description="1..8 bits: 'affine' zero-exact codes or 'clip' codes; default: the scheme the calibration used "
        "when the ranges come from it, else affine",
    )
    entropy: Entropy = Field("zstd", description="'zstd': Zstandard-code the packed codes when shorter; 'none'")
    allocation: Allocation | None = Field(
        None,
        description="1..8 bits: 'uniform', every value at bits; 'rate-distortion', a width of 1..8 per channel "
        "averaging bits (the same bytes), more where a channel's error drops most; default: the model's "
        "calibration's when the ranges come from it, else uniform",
    )
    alternatives: list[StrictInt] = Field(
        default_factory=list,
        description="more bit widths the split carries, each with its own ranges and fidelity (e.g. [2, 8] beside "
        "bits 4): a stream switches between them frame by frame as the link changes, without a redeploy",
        json_schema_extra={"items": {"enum": list(SUPPORTED_BITS)}},
    )

    @field_validator("alternatives")
    @classmethod
    def _known_widths(cls, alternatives: list[int]) -> list[int]:
        bad = [bits for bits in alternatives if bits not in SUPPORTED_BITS]
        if bad:
            raise ValueError(f"alternative bit widths must be among {', '.join(map(str, SUPPORTED_BITS))}, got {bad}")
        if len(set(alternatives)) != len(alternatives):
            raise ValueError(f"each alternative bit width once, got {alternatives}")
        return alternatives

    @field_validator("clip")
    @classmethod
    def _clip_fits_the_wire(cls, clip: tuple[float, float] | str | None) -> tuple[float, float] | str | None:
        # The frame carries the range as float32: an infinite or huge bound would make every inference fail.
        if isinstance(clip, tuple) and not all(math.isfinite(b) and abs(b) <= FLOAT32_MAX for b in clip):
            raise ValueError(
                f"clip bounds must be finite and fit in float32 (|bound| <= {FLOAT32_MAX:.4g}), got {clip}"
            )
        return clip


class BitsCalibration(BaseModel):
    """The calibrated range(s) of one split point at one bit width, and the fidelity measured with them."""

    lo: float | None = Field(description="clip lo of a single-tensor point (the smallest lo if per channel)")
    hi: float | None = Field(description="clip hi of a single-tensor point (the largest hi if per channel)")
    channel_lo: list[float] | None = Field(None, description="per-channel lo of a single-tensor point")
    channel_hi: list[float] | None = Field(None, description="per-channel hi of a single-tensor point")
    ranges: list[TensorRange] = Field(description="one range per cut tensor, exactly as a manifest carries them")
    top1_agreement: float
    cosine: float
    sqnr_db: float
    task: TaskFidelity | None = Field(None, description="detectors, segmenters, raw outputs: their answers compared")
    coded_bytes: int | None = Field(None, description="mean Zstandard-coded payload bytes per held-out image")

    def fidelity(self, images: int, fit_images: int | None = None) -> Fidelity:
        return Fidelity(
            top1_agreement=self.top1_agreement,
            cosine=self.cosine,
            sqnr_db=self.sqnr_db,
            images=images,
            fit_images=fit_images,
            coded_bytes=self.coded_bytes,
            task=self.task,
        )


class PointCalibration(BaseModel):
    tensors: list[str]
    bits: dict[int, BitsCalibration]


class CalibrationResult(BaseModel):
    """What POST /api/models/{id}/calibrate measured; stored as calibration.json beside the model."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    method: Literal["fixed", "percentile", "mse", "aciq"]
    per_channel: bool
    bits: list[int]
    images: int = Field(description="held-out inputs the fidelity was measured on")
    fit_images: int | None = Field(None, description="other inputs the ranges were fitted on")
    scheme: Scheme = Field("clip", description="the code scheme the ranges were measured with")
    allocation: Allocation = Field("uniform", description="rate-distortion: the ranges hold a width per channel")
    image_source: Literal["uploaded", "bundled"]
    created_at: str
    seconds: float = Field(description="wall time of the calibration and fidelity runs")
    points: dict[str, PointCalibration] = Field(description="by split point label, in network order")


# How long work (registration, calibration) tells its stage to whoever waits: a callback taking the stage's name.
Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    """The default when nobody listens (the synchronous routes)."""
    return None
