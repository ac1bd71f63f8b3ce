"""Cuts at a module's boundary: everything a module (``backbone.body``) hands to the rest of the network.

A person names a split by module ("after the backbone"), and a backbone that returns several feature maps (an
FPN's C2..C5) is cut by no single tensor. The cheapest cut at that depth (``min_cuts.py``) is often one layer later
(the FPN's lateral convolutions are narrower), so the module's own outputs would never be offered. Here each module
whose outputs are read outside it is a candidate: the head computes the module and all its ancestors, and the cut is
kept only when what the rest of the network reads of that head is exactly the module's outputs, all sendable, two to
``MAX_CUT_TENSORS`` of them (a skip around the module would make it something else, already offered as a k cut).
Module paths come from the exporters' scopes (``labels.node_scopes``).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from model_splitter.graph.cuts import TensorDag, tensor_dag
from model_splitter.graph.labels import node_scopes
from model_splitter.graph.min_cuts import MAX_CUT_TENSORS

MAX_MODULE_CUTS = 24


def _module_tensors(dag: TensorDag) -> dict[str, list[int]]:
    """Live tensors produced inside each module path, in topological order."""
    scopes = [node_scopes(node) for node in dag.nodes]
    inside: dict[str, list[int]] = {}
    for t in range(1, len(dag.tensors)):
        if dag.live[t] and dag.producer[t] >= 0:
            for scope in scopes[dag.producer[t]]:
                inside.setdefault(scope, []).append(t)
    return inside


def find_module_cuts(model: onnx.ModelProto, size_of: Callable[[str], int | None]) -> list[tuple[str, tuple[str, ...]]]:
    """(module path, its output tensors in topological order) for every module that is cut at its boundary by two
    or more sendable tensors, in network order; outermost module first where two share the same outputs."""
    dag = tensor_dag(model)
    count = len(dag.tensors)
    readers: list[list[int]] = [[] for _ in range(count)]
    for t in range(1, count):
        if dag.live[t]:
            for p in dag.preds[t]:
                readers[p].append(t)
    # Ancestors (with the tensor itself) of every live tensor as a bit set; indices are topological.
    ancestors = [0] * count
    for t in range(1, count):
        if dag.live[t]:
            mask = 1 << t
            for p in dag.preds[t]:
                mask |= ancestors[p]
            ancestors[t] = mask
    outputs = set(dag.outputs)
    found: dict[frozenset[int], tuple[str, tuple[int, ...]]] = {}
    for scope, members in _module_tensors(dag).items():
        member_set = set(members)
        leaving = [t for t in members if any(r not in member_set for r in readers[t])]
        if not 2 <= len(leaving) <= MAX_CUT_TENSORS:
            continue
        head = 0
        for t in members:
            head |= ancestors[t]
        if any(head >> t & 1 for t in outputs):
            continue  # the tail would have to send a graph output back
        sent = [t for t in _bits(head) if t > 0 and any(not head >> r & 1 for r in readers[t])]
        if sent != leaving or any(size_of(dag.tensors[t]) is None for t in sent):
            continue
        found.setdefault(frozenset(sent), (scope, tuple(sent)))
    ordered = sorted(found.values(), key=lambda item: (max(item[1]), item[1]))
    if len(ordered) > MAX_MODULE_CUTS:
        stride = len(ordered) / MAX_MODULE_CUTS
        ordered = [ordered[int(i * stride)] for i in range(MAX_MODULE_CUTS)]
    return [(scope, tuple(dag.tensors[t] for t in cut)) for scope, cut in ordered]


def _bits(mask: int) -> list[int]:
    """The indices set in ``mask``, ascending."""
    indices = []
    while mask:
        low = mask & -mask
        indices.append(low.bit_length() - 1)
        mask ^= low
    return indices
