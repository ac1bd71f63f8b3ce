"""The fixed clip ranges a split gets when nobody calibrated it: ``[0, 32]`` after ReLU-like ops, ``[-32, 32]`` else."""

from __future__ import annotations

import onnx

DEFAULT_CLIP = (0.0, 32.0)
# For tensors that can be negative (no ReLU-like op produced them) the fixed default is symmetric.
DEFAULT_SIGNED_CLIP = (-32.0, 32.0)
NON_NEGATIVE_OPS = frozenset({"Relu", "Clip", "Sigmoid", "HardSigmoid", "Softmax", "Abs"})


def default_clip(model: onnx.ModelProto, tensor: str) -> tuple[float, float]:
    for node in model.graph.node:
        if tensor in node.output:
            if node.op_type in NON_NEGATIVE_OPS:
                return DEFAULT_CLIP
            return DEFAULT_SIGNED_CLIP
    return DEFAULT_SIGNED_CLIP
