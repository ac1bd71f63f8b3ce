"""How a model's images come in and its outputs are read: the preprocessing and post-processing a split's
manifest carries (and the frozen base every manifest part shares). Fields at their defaults are left out of the
JSON, so manifests made before they existed keep their ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def is_none(value: object) -> bool:
    return value is None


ResizeMode = Literal["shorter_crop", "stretch", "letterbox"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("shorter_crop", "stretch", "letterbox")
Task = Literal["classification", "detection", "segmentation", "raw"]
TASKS: tuple[Task, ...] = ("classification", "detection", "segmentation", "raw")
# How a detector's outputs are laid out: "boxes" = boxes [K, 4] (x1, y1, x2, y2), scores [K] and labels [K] out of
# the graph, NMS included (torchvision's detectors); "yolov8" = one [N, 4 + C, A] tensor (cx, cy, w, h, C class
# scores); "yolov5" = one [N, A, 5 + C] tensor (cx, cy, w, h, objectness, C class scores); "picodet" = per stride
# (8, 16, 32, 64) class scores [N, A_s, C] then box distributions [N, A_s, 4 (R + 1)] (PP-PicoDet's GFL head).
DetectionDecoder = Literal["boxes", "yolov8", "yolov5", "picodet"]
DETECTION_DECODERS: tuple[DetectionDecoder, ...] = ("boxes", "yolov8", "yolov5", "picodet")


def _is_shorter_crop(value: object) -> bool:
    return value == "shorter_crop"


def _is_rgb(value: object) -> bool:
    return value == "RGB"


class Preprocessing(Frozen):
    """How an image becomes the model's input. Fields at their defaults are left out of the JSON, so manifests made
    before they existed keep their ids."""

    resize_shorter_to: int = Field(description="shorter_crop: the shorter side is resized to this, then centre-cropped")
    crop: list[int] = Field(description="[height, width] of the model's input")
    mean: list[float] = Field(description="per channel in the model's channel order, pixels x scale (0: none)")
    std: list[float] = Field(description="per channel in the model's channel order, pixels x scale (1: none)")
    color: Literal["RGB", "L"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    scale: float = Field(1.0 / 255.0, description="pixel values are multiplied by this before mean/std")
    resize: ResizeMode = Field(
        "shorter_crop",
        exclude_if=_is_shorter_crop,
        description="shorter_crop: shorter side to resize_shorter_to, centre crop (torchvision classifiers); "
        "stretch: straight to [height, width], aspect not kept; letterbox: fit inside, keep aspect, pad (YOLO)",
    )
    pad_value: int | None = Field(
        None, exclude_if=is_none, ge=0, le=255, description="letterbox: the padding's grey level (YOLO: 114)"
    )
    channel_order: Literal["RGB", "BGR"] = Field(
        "RGB", exclude_if=_is_rgb, description="order of the colour channels the model reads (OpenCV-trained: BGR)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        channels = 1 if self.color == "L" else 3
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise ValueError(f"crop must be [height, width] of positive sizes, got {self.crop}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} value(s) each for {self.color} images")
        if any(value <= 0 for value in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.resize_shorter_to < 1:
            raise ValueError(f"resize_shorter_to must be positive, got {self.resize_shorter_to}")
        return self


class DetectionSpec(Frozen):
    decoder: DetectionDecoder
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="default: detections below it are dropped")
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0, description="default: NMS drops a box overlapping more")
    max_detections: int = Field(100, ge=1, le=1000, description="default: at most this many per image")


class Postprocessing(Frozen):
    task: Task = "classification"
    softmax: bool = True
    top_k: int = Field(5, ge=1, le=1000)
    labels: list[str] | None = Field(None, description="class names by class id")
    detection: DetectionSpec | None = Field(None, exclude_if=is_none, description="detection: the output layout")

    @model_validator(mode="after")
    def _detection_iff_detector(self) -> Postprocessing:
        if (self.task == "detection") != (self.detection is not None):
            raise ValueError("a detection task needs its detection settings, and only a detection task has them")
        return self
