"""Tensors in Open Inference Protocol messages (KServe v2), both ways, with the binary tensor data extension.

A message is a JSON header, then, where tensors travel in binary, their little-endian bytes in the order the header
lists them (``parameters.binary_data_size`` each; the header's length in ``Inference-Header-Content-Length``).
The edge reads requests and writes answers with these functions; a robot speaking the protocol writes requests and
reads answers with the same ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from common.errors import BadRequest
from common.postprocess.raw import BINARY_DTYPES, DATATYPES, HEADER_LENGTH

# Numeric tensors only: BYTES (strings) have no fixed width and no use in a tail's inputs or outputs.
NUMERIC_TYPES: dict[str, np.dtype[Any]] = {name: np.dtype(dtype) for name, dtype in BINARY_DTYPES.items()}


def read_header(body: bytes, header_length: str | None, what: str) -> tuple[dict[str, Any], int]:
    """The message's JSON header and where its binary tensors start."""
    length = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {header_length!r}, the body has {len(body)} bytes")
        length = int(header_length)
    try:
        header = json.loads(body[:length])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the {what} is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise BadRequest(f"the {what} is not a JSON object")
    return header, length


def read_tensors(
    entries: Any, body: bytes, offset: int, types: Mapping[str, np.dtype[Any]], what: str
) -> dict[str, np.ndarray]:
    """Every tensor ``entries`` describes, as numpy arrays of its datatype (one of ``types``); the binary ones
    are read from ``body`` after ``offset``, and together they must use all of it."""
    if not isinstance(entries, list):
        raise BadRequest(f'the {what} has no list of tensors ([{{"name", "shape", "datatype", ...}}])')
    arrays: dict[str, np.ndarray] = {}
    for entry in entries:
        name, array, offset = _tensor(entry, body, offset, types)
        arrays[name] = array
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes after the last binary tensor of the {what}")
    return arrays


def _tensor(entry: Any, body: bytes, offset: int, types: Mapping[str, np.dtype[Any]]) -> tuple[str, np.ndarray, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BadRequest("every tensor needs a name, a shape and a datatype")
    name, shape, datatype = entry["name"], entry.get("shape"), entry.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"tensor {name!r}: shape must be a list of non-negative integers")
    if not isinstance(datatype, str) or datatype not in types:
        raise BadRequest(f"tensor {name!r} is {datatype}; this takes {' or '.join(types)}")
    dtype = types[datatype]
    count = int(np.prod(shape)) if shape else 1
    size = (entry.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(body):
            raise BadRequest(f"tensor {name!r}: binary_data_size {size!r} does not fit its shape {shape} or the body")
        array = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=count, offset=offset).astype(dtype)
        return name, array.reshape(shape), offset + size
    try:
        array = np.asarray(entry.get("data"), dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"tensor {name!r}: data does not fill its shape {shape} with {datatype} numbers") from exc
    return name, array, offset


def write_tensors(arrays: Mapping[str, np.ndarray], binary: Mapping[str, bool]) -> tuple[list[dict[str, Any]], bytes]:
    """Header entries for ``arrays`` and the bytes of those that travel in binary (``binary[name]``)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in arrays.items():
        array = np.asarray(value)
        entry: dict[str, Any] = {
            "name": name,
            "shape": list(array.shape),
            "datatype": DATATYPES.get(array.dtype.name, "BYTES"),
        }
        if binary.get(name, False):
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    return entries, b"".join(chunks)


def message(header: dict[str, Any], binary: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and its headers: plain JSON, or JSON then binary tensors with the header's length given."""
    text = json.dumps(header).encode()
    if not binary:
        return text, {"content-type": "application/json"}
    return text + binary, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
