"""ONNX operators as torch functions (the ones torchvision-style exports put in a tail), for ``onnx_module``:
arithmetic, activations, convolutions, pooling and normalisation here, the tensor-layout ones and
reductions in ``onnx_layout_ops``, the calling convention in ``onnx_op_base``.

Only the attribute values these exports use are accepted; anything else raises, and ``OnnxModule`` turns that into
a refusal naming the node.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from model_splitter.training.onnx_layout_ops import LAYOUT_OPERATORS
from model_splitter.training.onnx_op_base import Args, Attributes, Operator, Tensor, ints, need


def _unary(fn: Callable[[Tensor], Tensor]) -> Operator:
    return lambda args, attrs: [fn(need(args, 0))]


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Operator:
    return lambda args, attrs: [fn(need(args, 0), need(args, 1))]


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
    x, weight = need(args, 0), need(args, 1)
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
        x = need(args, 0)
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
        x = need(args, 0)
        return [reduce(x, dim=tuple(range(2, x.dim())), keepdim=True)]

    return pool


def _global_max(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    return x.amax(dim=dim, keepdim=keepdim)


def _gemm(args: Args, attrs: Attributes) -> list[Tensor]:
    a, b = need(args, 0), need(args, 1)
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
    x = need(args, 0)
    lo = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    hi = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    low = float(lo) if lo is not None else None
    high = float(hi) if hi is not None else None
    return [torch.clamp(x, low, high)]


def _batch_norm(args: Args, attrs: Attributes) -> list[Tensor]:
    x, scale, bias, mean, var = (need(args, i) for i in range(5))
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))]


def _layer_norm(args: Args, attrs: Attributes) -> list[Tensor]:
    x, scale = need(args, 0), need(args, 1)
    bias = args[2] if len(args) > 2 else None
    axis = attrs.get("axis", -1) % x.dim()
    return [F.layer_norm(x, x.shape[axis:], scale, bias, eps=attrs.get("epsilon", 1e-5))]


def _resize(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    scales = args[2] if len(args) > 2 else None
    sizes = args[3] if len(args) > 3 else None
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    if sizes is not None and sizes.numel():
        size = ints(sizes)[2:]
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
    x = need(args, 0)
    if attrs.get("mode", "constant") != "constant":
        raise ValueError(f"Pad mode {attrs['mode']} is not supported")
    pads = ints(args[1]) if len(args) > 1 and args[1] is not None else list(attrs.get("pads", []))
    value = args[2] if len(args) > 2 and args[2] is not None else None
    if len(args) > 3 and args[3] is not None:
        raise ValueError("Pad with axes is not supported")
    pairs, _ = _spatial_padding(pads, x.dim())
    return [F.pad(x, pairs, value=float(value) if value is not None else 0.0)]


def _softmax(args: Args, attrs: Attributes) -> list[Tensor]:
    return [torch.softmax(need(args, 0), dim=attrs.get("axis", -1))]


def _hard_sigmoid(args: Args, attrs: Attributes) -> list[Tensor]:
    x = need(args, 0)
    return [torch.clamp(attrs.get("alpha", 0.2) * x + attrs.get("beta", 0.5), 0.0, 1.0)]


def _leaky_relu(args: Args, attrs: Attributes) -> list[Tensor]:
    return [F.leaky_relu(need(args, 0), attrs.get("alpha", 0.01))]


def _identity(args: Args, attrs: Attributes) -> list[Tensor]:
    return [need(args, 0)]


def _div(a: Tensor, b: Tensor) -> Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


OPERATORS: dict[str, Operator] = {
    **LAYOUT_OPERATORS,
    "Abs": _unary(torch.abs),
    "Add": _binary(torch.add),
    "AveragePool": _pool("average"),
    "BatchNormalization": _batch_norm,
    "Clip": _clip,
    "Conv": _conv,
    "Div": _binary(_div),
    "Dropout": _identity,
    "Elu": lambda args, attrs: [F.elu(need(args, 0), attrs.get("alpha", 1.0))],
    "Equal": _binary(torch.eq),
    "Erf": _unary(torch.erf),
    "Exp": _unary(torch.exp),
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
    "Relu": _unary(torch.relu),
    "Resize": _resize,
    "Sigmoid": _unary(torch.sigmoid),
    "Softmax": _softmax,
    "Softplus": _unary(F.softplus),
    "Sqrt": _unary(torch.sqrt),
    "Sub": _binary(torch.sub),
    "Tanh": _unary(torch.tanh),
}
