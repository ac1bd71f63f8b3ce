"""ONNX's tensor-layout operators (shapes, reshapes, slices, gathers, casts, constants) and reductions as torch
functions."""

from __future__ import annotations

from collections.abc import Callable

import onnx
import torch

from model_splitter.training.onnx_op_base import Args, Attributes, Operator, Tensor, ints, need


def _flatten(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    leading = 1
    for size in x.shape[:axis]:
        leading *= size
    return [x.reshape(leading, -1)]


def _reshape(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    shape = ints(need(args, 1))
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if size == 0 else size for i, size in enumerate(shape)]
    return [x.reshape(shape)]


def _axes(args: Args, attrs: Attributes, index: int) -> list[int] | None:
    if "axes" in attrs:
        return list(attrs["axes"])
    value = args[index] if len(args) > index else None
    return ints(value) if value is not None else None


def _unsqueeze(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    axes = _axes(args, attrs, 1) or []
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return [x]


def _squeeze(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    axes = _axes(args, attrs, 1)
    if axes is None:
        return [x.squeeze()]
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return [x]


def _reduce(fn: Callable[..., Tensor]) -> Operator:
    def reduce(args: Args, attrs: Attributes) -> list[Tensor]:
        x = need(args, 0)
        axes = _axes(args, attrs, 1)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.dim()))
        return [fn(x, dim=tuple(a % x.dim() for a in axes), keepdim=keep)]

    return reduce


def _concat(args: Args, attrs: Attributes) -> list[Tensor]:
    parts = [arg for arg in args if arg is not None]
    return [torch.cat(parts, dim=attrs["axis"])]


def _split(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    axis = attrs.get("axis", 0)
    sizes = attrs.get("split") or (ints(args[1]) if len(args) > 1 and args[1] is not None else None)
    if sizes is None:
        count = attrs.get("num_outputs")
        if count is None:
            raise ValueError("Split without sizes needs num_outputs")
        chunk = -(-x.shape[axis] // count)
        return list(torch.split(x, chunk, dim=axis))
    return list(torch.split(x, list(sizes), dim=axis))


def _slice(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    starts, ends = ints(need(args, 1)), ints(need(args, 2))
    axes = ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step <= 0:
            raise ValueError("Slice with a negative step is not supported")
        size = x.shape[axis]
        index[axis % x.dim()] = slice(max(-size, min(start, size)), max(-size, min(end, size)), step)
    return [x[tuple(index)]]


def _gather(args: Args, attrs: Attributes) -> list[Tensor]:
    x, indices = need(args, 0), need(args, 1).to(torch.int64)
    axis = attrs.get("axis", 0) % x.dim()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    out = torch.index_select(x, axis, indices.reshape(-1))
    return [out.reshape(*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])]


def _shape(args: Args, attrs: Attributes) -> list[Tensor]:
    shape = list(need(args, 0).shape)
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return [torch.tensor(shape[start:end], dtype=torch.int64)]


def _constant(args: Args, attrs: Attributes) -> list[Tensor]:
    if "value" in attrs:
        return [attrs["value"]]
    for key, dtype in (("value_float", torch.float32), ("value_int", torch.int64)):
        if key in attrs:
            return [torch.tensor(attrs[key], dtype=dtype)]
    for key, dtype in (("value_floats", torch.float32), ("value_ints", torch.int64)):
        if key in attrs:
            return [torch.tensor(list(attrs[key]), dtype=dtype)]
    raise ValueError("Constant without a tensor value")


def _constant_of_shape(args: Args, attrs: Attributes) -> list[Tensor]:
    fill = attrs.get("value", torch.zeros(1, dtype=torch.float32))
    return [torch.full(ints(need(args, 0)), fill.reshape(-1)[0].item(), dtype=fill.dtype)]


_TORCH_TYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def _cast(args: Args, attrs: Attributes) -> list[Tensor]:
    dtype = _TORCH_TYPES.get(attrs["to"])
    if dtype is None:
        raise ValueError(f"Cast to ONNX type {attrs['to']} is not supported")
    return [need(args, 0).to(dtype)]


def _transpose(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    perm = attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


def _expand(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    shape = ints(need(args, 1))
    return [x * torch.ones(shape, dtype=x.dtype)]


def _where(args: Args, attrs: Attributes) -> list[Tensor]:
    return [torch.where(need(args, 0).to(torch.bool), need(args, 1), need(args, 2))]


LAYOUT_OPERATORS: dict[str, Operator] = {
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "Cast": _cast,
    "Concat": _concat,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Flatten": _flatten,
    "Gather": _gather,
    "Reshape": _reshape,
    "Shape": _shape,
    "Slice": _slice,
    "Split": _split,
    "Squeeze": _squeeze,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Where": _where,
}
