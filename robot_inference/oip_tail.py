"""A split's tail on any Open Inference Protocol server (ROBOT_EDGE_PROTOCOL=oip): our edge, Triton, KServe.

The robot sends the packed codes of the cut (``UINT8 <cut>.codes``, ``[1, bytes]``: common/codes.py, the bytes a
frame would carry) in the binary tensor extension to ``/v2/models/<readable name>/infer``, the name a Triton
repository exported by the splitter gives the tail, and asks for every output in binary. The server runs the tail
only, so post-processing (labels, boxes, masks) runs on the robot, from the same manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from common.errors import BadGateway, BadRequest
from common.manifest import SplitManifest
from common.oip_tensors import NUMERIC_TYPES, message, read_header, read_tensors, write_tensors
from common.postprocess.raw import HEADER_LENGTH


@dataclass(frozen=True)
class OipRequest:
    path: str
    body: bytes
    headers: dict[str, str]


def tail_path(manifest: SplitManifest) -> str:
    return f"/v2/models/{quote(manifest.readable_name, safe='')}/infer"


def infer_request(manifest: SplitManifest, codes: Mapping[str, np.ndarray], request_id: str) -> OipRequest:
    inputs, data = write_tensors(codes, {name: True for name in codes})
    header = {
        "id": request_id,
        "inputs": inputs,
        "outputs": [{"name": spec.name, "parameters": {"binary_data": True}} for spec in manifest.outputs],
    }
    body, headers = message(header, data)
    return OipRequest(tail_path(manifest), body, headers)


def tail_outputs(manifest: SplitManifest, body: bytes, header_length: str | None) -> list[np.ndarray]:
    """The answer's outputs, in the manifest's order (what the tail gives and post-processing takes)."""
    try:
        header, offset = read_header(body, header_length, "answer")
        arrays = read_tensors(header.get("outputs"), body, offset, NUMERIC_TYPES, "answer")
    except BadRequest as exc:
        raise BadGateway(f"the edge's answer is not an inference response: {exc.message}") from exc
    missing = [spec.name for spec in manifest.outputs if spec.name not in arrays]
    if missing:
        raise BadGateway(f"the edge's answer has no output {missing[0]!r} (it has {sorted(arrays)})")
    return [arrays[spec.name] for spec in manifest.outputs]


def answer_header_length(headers: Mapping[str, str]) -> str | None:
    return headers.get(HEADER_LENGTH.lower())
