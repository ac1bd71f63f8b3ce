"""ONNX operators as torch functions (the ones torchvision-style exports put in a tail), for ``onnx_module``.

Each takes the node's inputs (``None`` for an omitted optional input) and its attributes, and returns its outputs.
Integer tensors (shapes, axes, indices) flow through as int64 tensors, so shape arithmetic after ``Shape`` runs as
ONNX Runtime runs it. Only the attribute values these exports use are accepted; anything else raises, and
``OnnxModule`` turns that into a refusal naming the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from common.errors import UnprocessableModel

Attributes = dict[str, Any]
Tensor = torch.Tensor
Args = Sequence[Tensor | None]
Operator = Callable[[Args, Attributes], list[Tensor]]


def attributes_of(node: onnx.NodeProto) -> Attributes:
    out: Attributes = {}
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            out[attribute.name] = torch.from_numpy(numpy_helper.to_array(attribute.t).copy())
        elif attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnprocessableModel(f"fine-tuning cannot train through control flow (node {node.name!r})")
        else:
            value = onnx.helper.get_attribute_value(attribute)
            out[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _need(args: Args, index: int) -> Tensor:
    value = args[index] if index < len(args) else None
    if value is None:
        raise ValueError(f"input {index} is required")
    return value


def _ints(value: Tensor | None) -> list[int]:
    return [] if value is None else [int(v) for v in value.reshape(-1).tolist()]


def _unary(fn: Callable[[Tensor], Tensor]) -> Operator:
    return lambda args, attrs: [fn(_need(args, 0))]


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Operator:
    return lambda args, attrs: [fn(_need(args, 0), _need(args, 1))]


def _spatial_padding(pads: list[int], rank: int) -> tuple[list[int], bool]:
    """ONNX pads (all begins, then all ends) as F.pad's last-axis-first pairs; and whether they are symmetric."""
    begins, ends = pads[:rank], pads[rank:]
    pairs: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        pairs += [begin, end]
    return pairs, begins == ends


def _check_auto_pad(attrs: Attributes) -> None:
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ValueError(f"auto_pad {attrs['auto_pad']} is not supported")


def _conv(args: Args, attrs: Attributes) -> list[Tensor]:
    _check_auto_pad(attrs)
    x, weight = _need(args, 0), _need(args, 1)
    bias = args[2] if len(args) > 2 else None
    rank = weight.dim() - 2
    pads = list(attrs.get("pads", [0] * 2 * rank))
    pairs, symmetric = _spatial_padding(pads, rank)
    if not symmetric:
        x, padding = F.pad(x, pairs), [0] * rank
    else:
        padding = pads[:rank]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    return [
        conv(
            x,
            weight,
            bias,
            stride=attrs.get("strides", [1] * rank),
            padding=padding,
            dilation=attrs.get("dilations", [1] * rank),
            groups=attrs.get("group", 1),
        )
    ]


def _pool(kind: str) -> Operator:
    def pool(args: Args, attrs: Attributes) -> list[Tensor]:
        _check_auto_pad(attrs)
        x = _need(args, 0)
        kernel = list(attrs["kernel_shape"])
        rank = len(kernel)
        pads = list(attrs.get("pads", [0] * 2 * rank))
        pairs, symmetric = _spatial_padding(pads, rank)
        strides = attrs.get("strides", [1] * rank)
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            if not symmetric:
                x, pads = F.pad(x, pairs, value=float("-inf")), [0] * 2 * rank
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
            return [fn(x, kernel, strides, pads[:rank], dilation=attrs.get("dilations", [1] * rank), ceil_mode=ceil)]
        include = bool(attrs.get("count_include_pad", 0))
        if not symmetric:
            if not include:
                raise ValueError("asymmetric AveragePool padding that excludes the padding is not supported")
            x, pads = F.pad(x, pairs), [0] * 2 * rank
        fn_avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
        return [fn_avg(x, kernel, strides, pads[:rank], ceil_mode=ceil, count_include_pad=include)]

    return pool


def _global(reduce: Callable[..., Tensor]) -> Operator:
    def pool(args: Args, attrs: Attributes) -> list[Tensor]:
        x = _need(args, 0)
        return [reduce(x, dim=tuple(range(2, x.dim())), keepdim=True)]

    return pool


def _global_max(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    return x.amax(dim=dim, keepdim=keepdim)


def _gemm(args: Args, attrs: Attributes) -> list[Tensor]:
    a, b = _need(args, 0), _need(args, 1)
    if attrs.get("transA", 0):
        a = a.transpose(0, 1)
    if attrs.get("transB", 0):
        b = b.transpose(0, 1)
    out = attrs.get("alpha", 1.0) * (a @ b)
    c = args[2] if len(args) > 2 else None
    if c is not None:
        out = out + attrs.get("beta", 1.0) * c
    return [out]


def _clip(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    lo = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    hi = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    low = float(lo) if lo is not None else None
    high = float(hi) if hi is not None else None
    return [torch.clamp(x, low, high)]


def _batch_norm(args: Args, attrs: Attributes) -> list[Tensor]:
    x, scale, bias, mean, var = (_need(args, i) for i in range(5))
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))]


def _layer_norm(args: Args, attrs: Attributes) -> list[Tensor]:
    x, scale = _need(args, 0), _need(args, 1)
    bias = args[2] if len(args) > 2 else None
    axis = attrs.get("axis", -1) % x.dim()
    return [F.layer_norm(x, x.shape[axis:], scale, bias, eps=attrs.get("epsilon", 1e-5))]


def _flatten(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    leading = 1
    for size in x.shape[:axis]:
        leading *= size
    return [x.reshape(leading, -1)]


def _reshape(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    shape = _ints(_need(args, 1))
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if size == 0 else size for i, size in enumerate(shape)]
    return [x.reshape(shape)]


def _axes(args: Args, attrs: Attributes, index: int) -> list[int] | None:
    if "axes" in attrs:
        return list(attrs["axes"])
    value = args[index] if len(args) > index else None
    return _ints(value) if value is not None else None


def _unsqueeze(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    axes = _axes(args, attrs, 1) or []
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return [x]


def _squeeze(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    axes = _axes(args, attrs, 1)
    if axes is None:
        return [x.squeeze()]
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return [x]


def _reduce(fn: Callable[..., Tensor]) -> Operator:
    def reduce(args: Args, attrs: Attributes) -> list[Tensor]:
        x = _need(args, 0)
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
    x = _need(args, 0)
    axis = attrs.get("axis", 0)
    sizes = attrs.get("split") or (_ints(args[1]) if len(args) > 1 and args[1] is not None else None)
    if sizes is None:
        count = attrs.get("num_outputs")
        if count is None:
            raise ValueError("Split without sizes needs num_outputs")
        chunk = -(-x.shape[axis] // count)
        return list(torch.split(x, chunk, dim=axis))
    return list(torch.split(x, list(sizes), dim=axis))


def _slice(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    starts, ends = _ints(_need(args, 1)), _ints(_need(args, 2))
    axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step <= 0:
            raise ValueError("Slice with a negative step is not supported")
        size = x.shape[axis]
        index[axis % x.dim()] = slice(max(-size, min(start, size)), max(-size, min(end, size)), step)
    return [x[tuple(index)]]


def _gather(args: Args, attrs: Attributes) -> list[Tensor]:
    x, indices = _need(args, 0), _need(args, 1).to(torch.int64)
    axis = attrs.get("axis", 0) % x.dim()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    out = torch.index_select(x, axis, indices.reshape(-1))
    return [out.reshape(*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])]


def _shape(args: Args, attrs: Attributes) -> list[Tensor]:
    shape = list(_need(args, 0).shape)
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
    return [torch.full(_ints(_need(args, 0)), fill.reshape(-1)[0].item(), dtype=fill.dtype)]


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
    return [_need(args, 0).to(dtype)]


def _resize(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    scales = args[2] if len(args) > 2 else None
    sizes = args[3] if len(args) > 3 else None
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    if sizes is not None and sizes.numel():
        size = _ints(sizes)[2:]
        factor = None
    elif scales is not None and scales.numel():
        size = None
        factor = [float(s) for s in scales.reshape(-1).tolist()[2:]]
    else:
        raise ValueError("Resize needs scales or sizes")
    if mode == "nearest":
        if transform != "asymmetric" or attrs.get("nearest_mode", "round_prefer_floor") != "floor":
            raise ValueError(f"nearest Resize with {transform} coordinates is not supported")
        return [F.interpolate(x, size=size, scale_factor=factor, mode="nearest")]
    if mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        linear = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
        align = transform == "align_corners"
        return [F.interpolate(x, size=size, scale_factor=factor, mode=linear, align_corners=align)]
    raise ValueError(f"Resize mode {mode} with {transform} coordinates is not supported")


def _pad(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    if attrs.get("mode", "constant") != "constant":
        raise ValueError(f"Pad mode {attrs['mode']} is not supported")
    pads = _ints(args[1]) if len(args) > 1 and args[1] is not None else list(attrs.get("pads", []))
    value = args[2] if len(args) > 2 and args[2] is not None else None
    if len(args) > 3 and args[3] is not None:
        raise ValueError("Pad with axes is not supported")
    pairs, _ = _spatial_padding(pads, x.dim())
    return [F.pad(x, pairs, value=float(value) if value is not None else 0.0)]


def _softmax(args: Args, attrs: Attributes) -> list[Tensor]:
    return [torch.softmax(_need(args, 0), dim=attrs.get("axis", -1))]


def _transpose(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    perm = attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


def _expand(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    shape = _ints(_need(args, 1))
    return [x * torch.ones(shape, dtype=x.dtype)]


def _where(args: Args, attrs: Attributes) -> list[Tensor]:
    return [torch.where(_need(args, 0).to(torch.bool), _need(args, 1), _need(args, 2))]


def _hard_sigmoid(args: Args, attrs: Attributes) -> list[Tensor]:
    x = _need(args, 0)
    return [torch.clamp(attrs.get("alpha", 0.2) * x + attrs.get("beta", 0.5), 0.0, 1.0)]


def _leaky_relu(args: Args, attrs: Attributes) -> list[Tensor]:
    return [F.leaky_relu(_need(args, 0), attrs.get("alpha", 0.01))]


def _identity(args: Args, attrs: Attributes) -> list[Tensor]:
    return [_need(args, 0)]


def _div(a: Tensor, b: Tensor) -> Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


OPERATORS: dict[str, Operator] = {
    "Abs": _unary(torch.abs),
    "Add": _binary(torch.add),
    "AveragePool": _pool("average"),
    "BatchNormalization": _batch_norm,
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Conv": _conv,
    "Div": _binary(_div),
    "Dropout": _identity,
    "Elu": lambda args, attrs: [F.elu(_need(args, 0), attrs.get("alpha", 1.0))],
    "Equal": _binary(torch.eq),
    "Erf": _unary(torch.erf),
    "Exp": _unary(torch.exp),
    "Expand": _expand,
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "GlobalAveragePool": _global(torch.mean),
    "GlobalMaxPool": _global(_global_max),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _unary(F.hardswish),
    "Identity": _identity,
    "LayerNormalization": _layer_norm,
    "LeakyRelu": _leaky_relu,
    "Log": _unary(torch.log),
    "MatMul": _binary(torch.matmul),
    "MaxPool": _pool("max"),
    "Mul": _binary(torch.mul),
    "Neg": _unary(torch.neg),
    "Pad": _pad,
    "Pow": _binary(torch.pow),
    "Reciprocal": _unary(torch.reciprocal),
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "Relu": _unary(torch.relu),
    "Reshape": _reshape,
    "Resize": _resize,
    "Shape": _shape,
    "Sigmoid": _unary(torch.sigmoid),
    "Slice": _slice,
    "Softmax": _softmax,
    "Softplus": _unary(F.softplus),
    "Split": _split,
    "Sqrt": _unary(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _binary(torch.sub),
    "Tanh": _unary(torch.tanh),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Where": _where,
}
