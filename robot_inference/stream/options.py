"""A stream's options, from the handshake's query string or a first text message (JSON), checked once."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InvalidArgument
from common.quantization import SUPPORTED_BITS

StreamMode = Literal["auto", "split", "all-robot", "all-edge"]
DropPolicy = Literal["oldest", "newest"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: StreamMode = Field(
        "auto", description="auto: per frame, the best fidelity the deadline allows; or one plan for every frame"
    )
    split_id: str | None = Field(None, description="the split whose model is streamed (default: the active one)")
    bits: int | None = Field(None, description="mode split: the width every frame travels at (one of the split's)")
    deadline_ms: float = Field(100.0, gt=0, le=60_000, description="answer each frame within this many ms")
    in_flight: int = Field(2, ge=1, le=4, description="frames being worked on at once (head of one, edge of another)")
    queue: int = Field(1, ge=1, le=8, description="frames that may wait for a free slot")
    drop: DropPolicy = Field("oldest", description="a full queue drops its oldest frame, or the one arriving")


def parse_options(values: dict[str, str] | str) -> StreamOptions:
    """Options from query parameters or a JSON object; InvalidArgument says which one is wrong and why."""
    try:
        raw = json.loads(values) if isinstance(values, str) else dict(values)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the first text message must be a JSON object of stream options: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument("the first text message must be a JSON object of stream options")
    try:
        options = StreamOptions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise InvalidArgument(f"stream option {where}: {first['msg']}") from None
    if options.bits is not None and options.bits not in SUPPORTED_BITS:
        raise InvalidArgument(f"stream option bits must be one of {', '.join(map(str, SUPPORTED_BITS))}")
    return options
