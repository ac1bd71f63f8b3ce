"""JSON answers exchanged between the services and returned to people."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from common.postprocess.answers import Answer, Prediction
from common.timing import Stage

Mode = Literal["split", "all-robot", "all-edge"]
MODES: tuple[Mode, ...] = ("split", "all-robot", "all-edge")


class EdgeResult(BaseModel):
    split_id: str
    request_id: str
    mode: Mode
    answers: list[Answer] = Field(description="one per image of the frame; boxes and maps in the model's input pixels")
    predictions: list[Prediction] = Field(description="classification: the first image's top-k (else empty)")
    batch_predictions: list[list[Prediction]] = Field(description="classification: every image's top-k")
    stages: list[Stage]
    provider: str
    received_bytes: int
    tail_batch: int | None = Field(
        None, description="samples in the tail run this frame went in, its own included (dynamic batching)"
    )


class WireBytes(BaseModel):
    sent: int = Field(description="request body the robot sent to the edge (0 in all-robot mode)")
    received: int = Field(description="response body the robot received from the edge")
    feature_fp32: int = Field(description="size of the cut tensors as float32, for comparison")
    image: int = Field(description="size of the encoded image as uploaded")


class Providers(BaseModel):
    robot: str | None
    edge: str | None


class InferenceResult(BaseModel):
    mode: Mode
    split_id: str
    request_id: str
    model_id: str
    model_name: str
    split_point: str
    bits: int
    weights_trained: bool
    answer: Answer = Field(description="what the model found, per its task; boxes and maps in the image's pixels")
    predictions: list[Prediction] = Field(description="classification: the top-k classes (the same as in answer)")
    stages: list[Stage]
    total_ms: float
    bytes: WireBytes
    providers: Providers
    fallback_reason: str | None = Field(
        None, description="set when the edge failed and the robot answered with its full model instead"
    )
    edge_url: str | None = Field(None, description="the edge that answered (of the robot's ROBOT_EDGE_URL list)")
