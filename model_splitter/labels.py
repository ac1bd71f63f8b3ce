"""Human labels for split points: the module path a person would name (``layer2``, ``features.3``).

A cut tensor is labelled with the outermost module of its producer that the tensor leaves: the shortest scope
prefix of the producing node such that some consumer lies outside it. So the last ReLU of ``layer2.1`` is
``layer2`` (it feeds ``layer3``), while the output of ``layer2.0`` is ``layer2.0`` (it stays inside ``layer2``).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Mapping
from typing import Protocol

import onnx

from common.errors import InvalidArgument
from model_splitter.graph_cuts import find_single_tensor_cuts

# Where the dynamo exporter keeps the module path of a node; its node names carry none.
DYNAMO_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


class SplitPointLike(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def tensor(self) -> str: ...


def _absolute(components: list[str]) -> list[str]:
    """Turn scope components into full module paths.

    The TorchScript exporter writes ``conv.0`` below ``conv`` (a Sequential inside ``features.1``), i.e. a
    component may extend its parent's component as written rather than the parent's full path; any other
    component is relative to its parent. Module attribute names never contain dots, so this is unambiguous,
    and the dynamo exporter's full paths (each extending its parent's) pass through unchanged.
    """
    paths: list[str] = []
    for index, component in enumerate(components):
        if index:
            parent = components[index - 1]
            if component.startswith(parent + "."):
                component = paths[-1] + component[len(parent) :]
            else:
                component = f"{paths[-1]}.{component}"
        paths.append(component)
    return paths


def node_scopes(node: onnx.NodeProto) -> list[str]:
    """Module paths enclosing a node, outermost first; empty when the exporter recorded none."""
    for prop in node.metadata_props:
        if prop.key == DYNAMO_SCOPES_KEY:
            try:
                parsed = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                # The root module is '' and the last element names the op itself, not a module.
                return _absolute([item for item in parsed[:-1] if item])
            break
    # TorchScript exporter: "/layer2/layer2.1/relu_1/Relu"; the last component is the op.
    if node.name.startswith("/"):
        return _absolute([part for part in node.name.split("/")[1:-1] if part])
    return []


def _label(tensor: str, producer: onnx.NodeProto | None, consumers: list[onnx.NodeProto], is_output: bool) -> str:
    if producer is None:
        return tensor
    scopes = node_scopes(producer)
    if not scopes:
        return producer.op_type.lower() or tensor
    consumer_scopes = [node_scopes(node) for node in consumers]
    for depth in range(1, len(scopes) + 1):
        prefix = scopes[:depth]
        if is_output or any(other[:depth] != prefix for other in consumer_scopes):
            return scopes[depth - 1]
    # Every consumer sits inside the producer's innermost module: the tensor is internal to that module's forward
    # (the residual Add of a block), so name the op within it and leave the module's name to the module's output.
    return f"{scopes[-1]}.{producer.op_type.lower()}"


def label_tensors(model: onnx.ModelProto, tensors: list[str]) -> dict[str, str]:
    """A unique human label for each tensor, in the given order (repeats get ``#2``, ``#3``)."""
    graph = model.graph
    wanted = set(tensors)
    producers: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[onnx.NodeProto]] = {name: [] for name in tensors}
    for node in graph.node:
        for name in node.output:
            if name in wanted:
                producers[name] = node
        for name in set(node.input):
            if name in wanted:
                consumers[name].append(node)
    outputs = {value.name for value in graph.output}

    labels: dict[str, str] = {}
    used: set[str] = set()
    for name in tensors:
        base = _label(name, producers.get(name), consumers[name], name in outputs)
        label, repeat = base, 1
        while label in used:
            repeat += 1
            label = f"{base}#{repeat}"
        used.add(label)
        labels[name] = label
    return labels


def _points(model_or_points: onnx.ModelProto | Mapping[str, str] | Iterable[SplitPointLike]) -> dict[str, str]:
    """Label -> tensor for whatever the caller holds."""
    if isinstance(model_or_points, onnx.ModelProto):
        labels = label_tensors(model_or_points, find_single_tensor_cuts(model_or_points))
        return {label: tensor for tensor, label in labels.items()}
    if isinstance(model_or_points, Mapping):
        return dict(model_or_points)
    return {point.label: point.tensor for point in model_or_points}


def resolve_split_point(
    model_or_points: onnx.ModelProto | Mapping[str, str] | Iterable[SplitPointLike], name: str
) -> str:
    """The cut tensor named by ``name``, which may be a label (``layer2``) or the tensor's own name.

    ``model_or_points`` is a model (its cuts are found), a label -> tensor mapping, or split point objects with
    ``label`` and ``tensor`` attributes (such as ``analysis.SplitPointInfo``).
    """
    points = _points(model_or_points)
    if name in points:
        return points[name]
    if name in points.values():
        return name
    if not points:
        raise InvalidArgument(f"split point {name!r} does not exist: this model has no single-tensor split point")
    if isinstance(model_or_points, onnx.ModelProto) and any(name in node.output for node in model_or_points.graph.node):
        raise InvalidArgument(
            f"tensor {name!r} is not a split point: some path from the input to the output bypasses it, so the "
            f"tail would need more than this one tensor. Valid split points: {_shown(list(points))}"
        )
    labels = list(points)
    close = difflib.get_close_matches(name, labels, n=3)
    hint = f" Did you mean {', '.join(repr(label) for label in close)}?" if close else ""
    raise InvalidArgument(f"split point {name!r} does not exist.{hint} Valid split points: {_shown(labels)}")


def _shown(labels: list[str]) -> str:
    return f"{', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''} ({len(labels)} in all, in network order)"
