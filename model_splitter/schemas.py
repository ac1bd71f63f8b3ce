"""JSON shapes of the splitter's API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.manifest import Preprocessing


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


class ModelRecord(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    name: str
    sha256: str
    size_bytes: int
    source_format: str
    architecture: str | None
    input_shape: list[int]
    weights_trained: bool
    export_max_abs_diff: float | None
    num_classes: int | None
    opset: int
    created_at: str
    preprocessing: Preprocessing
    split_points: list[SplitPoint]


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


class SplitRequest(BaseModel):
    split_point: str = Field(description="a split point's label (module path) or tensor name")
    bits: int = Field(4, description="1..8 quantized, 16 float16, 32 float32")
    clip: tuple[float, float] | None = Field(None, description="[lo, hi]; default [0, 32] for non-negative tensors")
