"""Output tensors as they are, in the Open Inference Protocol's JSON tensor layout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.postprocess.answers import RawTensor

DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}


BINARY_DTYPES = {name: dtype for dtype, name in DATATYPES.items()}
# The Open Inference Protocol's binary tensor extension: the JSON part's length, in bytes, before the tensors.
HEADER_LENGTH = "Inference-Header-Content-Length"


def binary_answer(result: dict[str, Any]) -> tuple[bytes, int]:
    """``result`` (an inference result as JSON, its ``answer`` raw tensors) in the protocol's binary tensor layout:
    the JSON with each tensor's ``data`` replaced by ``parameters.binary_data_size``, then every tensor's bytes
    (little-endian, row-major) in order. Returns the body and the JSON part's length."""
    chunks: list[bytes] = []
    tensors = []
    for tensor in result["answer"]["tensors"]:
        dtype = np.dtype(BINARY_DTYPES[tensor["datatype"]]).newbyteorder("<")
        values = [np.nan if v is None else v for v in tensor["data"]]
        data = np.asarray(values, dtype=dtype).tobytes()
        chunks.append(data)
        described = {key: value for key, value in tensor.items() if key != "data"}
        tensors.append({**described, "parameters": {"binary_data_size": len(data)}})
    header = json.dumps({**result, "answer": {**result["answer"], "tensors": tensors}}).encode()
    return header + b"".join(chunks), len(header)


def raw_tensors(outputs: Sequence[np.ndarray], names: Sequence[str], item: int, batch: int) -> list[RawTensor]:
    """Batch item ``item`` of every output (a tensor without the batch axis is given whole)."""
    tensors: list[RawTensor] = []
    for name, output in zip(names, outputs, strict=False):
        array = np.asarray(output)
        if array.ndim and array.shape[0] == batch and batch > 1:
            array = array[item : item + 1]
        tensors.append(raw_tensor(name, array))
    return tensors


def raw_tensor(name: str, array: np.ndarray) -> RawTensor:
    datatype = DATATYPES.get(array.dtype.name, "BYTES")
    values = array.ravel()
    if np.issubdtype(values.dtype, np.floating):
        # JSON has no NaN or infinity: those values are null, as the protocol's JSON encoding has them.
        finite = np.isfinite(values)
        data = [float(v) if ok else None for v, ok in zip(values.astype(np.float64).tolist(), finite, strict=True)]
    elif values.dtype == np.bool_:
        data = [bool(v) for v in values.tolist()]
    else:
        data = [int(v) for v in values.tolist()]
    return RawTensor(name=name, shape=list(array.shape), datatype=datatype, data=data)
