"""An ONNX graph run by torch, its weights trainable, and written back into the same graph.

A fine-tuned tail must be the split's tail with other weights and nothing else: the same nodes, the same names, the
same inputs and outputs, so robot, edge, the code graphs and the serving engines take it as they take any tail. So
the tail is not re-exported: ``OnnxModule`` interprets its nodes with torch operators, the float initializers that
are weights (``trainable_initializers``) become parameters, and ``with_weights`` writes the trained values back
into a copy of the graph. Every other initializer and ``Constant`` stays a constant tensor (shapes, axes, the
bounds of a ReLU6). The interpretation is checked against ONNX Runtime on real features before any training
(``fine_tuning``), so an operator read wrongly is a refusal, not a wrong tail; an operator that is not here is a
``UnsupportedOperator`` naming it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from common.errors import UnprocessableModel
from model_splitter.graph.inputs import real_inputs
from model_splitter.training.onnx_op_base import Attributes, attributes_of
from model_splitter.training.onnx_ops import OPERATORS

# (op type, input index) pairs whose float initializer is a weight, not a constant of the computation.
_WEIGHT_INPUTS = {
    ("Conv", 1),
    ("Conv", 2),
    ("ConvTranspose", 1),
    ("ConvTranspose", 2),
    ("Gemm", 1),
    ("Gemm", 2),
    ("MatMul", 0),
    ("MatMul", 1),
    ("BatchNormalization", 1),
    ("BatchNormalization", 2),
    ("LayerNormalization", 1),
    ("LayerNormalization", 2),
    ("InstanceNormalization", 1),
    ("InstanceNormalization", 2),
    ("PRelu", 1),
}
# Element-wise bias and scale tensors (an Add after a MatMul, a layer scale) are weights when they hold more than
# one value; a single value there is a constant of the formula (HardSwish's 3, a division by 6).
_ELEMENTWISE = {"Add", "Mul", "Sub"}


class UnsupportedOperator(UnprocessableModel):
    code = "unsupported_operator"


def trainable_initializers(model: onnx.ModelProto) -> list[str]:
    """The float initializers the tail learns, in graph order."""
    floats = {
        init.name: init
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
    }
    found: dict[str, None] = {}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name not in floats:
                continue
            size = int(np.prod(floats[name].dims)) if floats[name].dims else 1
            if (node.op_type, index) in _WEIGHT_INPUTS or (node.op_type in _ELEMENTWISE and size > 1):
                found[name] = None
    return list(found)


class OnnxModule(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        missing = sorted({node.op_type for node in graph.node if node.op_type not in OPERATORS})
        if missing:
            raise UnsupportedOperator(
                f"fine-tuning cannot run this tail: its operator(s) {', '.join(missing)} have no torch twin here "
                "(supported: " + ", ".join(sorted(OPERATORS)) + ")"
            )
        if any(node.domain not in ("", "ai.onnx") for node in graph.node):
            raise UnsupportedOperator("fine-tuning runs standard ONNX operators only, this tail uses a custom domain")
        self.trainable = trainable_initializers(model)
        self.weights = torch.nn.ParameterList()
        self._slot: dict[str, int] = {}
        self._constants: dict[str, torch.Tensor] = {}
        learnt = set(self.trainable)
        for init in graph.initializer:
            value = torch.from_numpy(np.array(numpy_helper.to_array(init)))
            if init.name in learnt:
                self._slot[init.name] = len(self.weights)
                self.weights.append(torch.nn.Parameter(value.to(torch.float32)))
            else:
                self._constants[init.name] = value
        self._nodes: list[tuple[onnx.NodeProto, Attributes]] = [(node, attributes_of(node)) for node in graph.node]
        self.input_names = real_inputs(graph)
        self.output_names = [output.name for output in graph.output]

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        env: dict[str, torch.Tensor] = dict(self._constants)
        env.update({name: self.weights[slot] for name, slot in self._slot.items()})
        env.update(zip(self.input_names, inputs, strict=True))
        for node, attrs in self._nodes:
            args = [env[name] if name else None for name in node.input]
            try:
                results = OPERATORS[node.op_type](args, attrs)
            except UnprocessableModel:
                raise
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                raise UnsupportedOperator(
                    f"fine-tuning could not run node {node.name or node.op_type!r} ({node.op_type}) with torch: {exc}"
                ) from exc
            for name, value in zip(node.output, results, strict=False):
                if name:
                    env[name] = value
        return [env[name] for name in self.output_names]

    def with_weights(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``model`` (the graph this module was made from) holding the module's current weights."""
        out = copy.deepcopy(model)
        for init in out.graph.initializer:
            slot = self._slot.get(init.name)
            if slot is None:
                continue
            dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
            value = self.weights[slot].detach().cpu().numpy().astype(dtype)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
        return out

    def parameter_count(self) -> int:
        return sum(int(weight.numel()) for weight in self.weights)


def run_numpy(module: OnnxModule, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    return [output.detach().numpy() for output in outputs]
