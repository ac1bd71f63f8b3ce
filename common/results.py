"""JSON answers exchanged between the services and returned to people."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from common.postprocess import Prediction
from common.timing import Stage

Mode = Literal["split", "all-robot", "all-edge"]
MODES: tuple[Mode, ...] = ("split", "all-robot", "all-edge")


class EdgeResult(BaseModel):
    split_id: str
    request_id: str
    mode: Mode
    predictions: list[Prediction]
    batch_predictions: list[list[Prediction]]
    stages: list[Stage]
    provider: str
    received_bytes: int


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
    predictions: list[Prediction]
    stages: list[Stage]
    total_ms: float
    bytes: WireBytes
    providers: Providers
    fallback_reason: str | None = Field(
        None, description="set when the edge failed and the robot answered with its full model instead"
    )
