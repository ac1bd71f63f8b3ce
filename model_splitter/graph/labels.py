"""Human labels for split points: the module path a person would name (``layer2``, ``features.3``).

A cut tensor is labelled with the outermost module of its producer that the tensor leaves: the shortest scope
prefix of the producing node such that some consumer lies outside it. So the last ReLU of ``layer2.1`` is
``layer2`` (it feeds ``layer3``), while the output of ``layer2.0`` is ``layer2.0`` (it stays inside ``layer2``).
"""

from __future__ import annotations

import ast

import onnx

# Where the dynamo exporter keeps the module path of a node; its node names carry none.
DYNAMO_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


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
