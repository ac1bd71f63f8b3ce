"""What a model's outputs mean to a person, per task: the JSON every service answers with."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InvalidArgument
from common.model_io import Task


class Prediction(BaseModel):
    index: int
    label: str
    probability: float


class Detection(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the image sent (the model's input at the edge)")
    score: float
    label: str
    class_id: int


class ClassShare(BaseModel):
    class_id: int
    label: str
    share: float = Field(description="share of the image's pixels given this class, 0..1")


class SegmentationMap(BaseModel):
    width: int
    height: int
    png_base64: str = Field(
        description="the class map as an 8-bit greyscale PNG, base64: each pixel's value is its class id"
    )
    classes: list[ClassShare] = Field(description="the classes present, most pixels first")


class RawTensor(BaseModel):
    """One output tensor in the Open Inference Protocol's JSON tensor layout (row-major data)."""

    name: str
    shape: list[int]
    datatype: str = Field(description="FP32, FP16, INT64, INT32, UINT8, BOOL, ... as the protocol names them")
    data: list[float | None] | list[int] | list[bool] = Field(description="row-major; NaN and infinities are null")


class Answer(BaseModel):
    """One image's answer. Only the field of the model's task is filled."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    predictions: list[Prediction] = Field(default_factory=list, description="classification: top-k classes")
    detections: list[Detection] = Field(default_factory=list, description="detection: boxes, best score first")
    segmentation: SegmentationMap | None = Field(None, description="segmentation: the class map and class shares")
    tensors: list[RawTensor] = Field(default_factory=list, description="raw: every output tensor")


class DetectionOptions(BaseModel):
    """A request's overrides of the split's detection defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    iou_threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_detections: int | None = Field(None, ge=1, le=1000)

    @property
    def given(self) -> bool:
        return any(value is not None for value in self.model_dump().values())

    def query(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.model_dump().items() if value is not None}


NO_OPTIONS = DetectionOptions()
DETECTION_OPTIONS = {
    "score_threshold": "detection: drop boxes scoring below this, 0..1 (default: the split's)",
    "iou_threshold": "detection: NMS drops a box overlapping a better one of its class by more, 0..1",
    "max_detections": "detection: at most this many boxes, 1..1000",
}


def parse_detection_options(values: Mapping[str, str | None]) -> DetectionOptions:
    """The options as a request gives them (text from a query string or a form); absent or empty: the split's."""
    given = {name: value for name, value in values.items() if value not in (None, "")}
    try:
        return DetectionOptions.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise InvalidArgument(f"{field}: {error['msg']} (got {error.get('input')!r})") from None
