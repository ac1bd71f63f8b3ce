"""Where an ONNX graph can be cut into a head and a tail that exchange exactly one tensor.

A tensor is a single-tensor cut when every path from the graph inputs to the graph outputs passes through it,
i.e. when it dominates a virtual sink fed by all graph outputs in the tensor-level DAG rooted at a virtual source
that feeds all graph inputs. Working on the graph alone (no per-architecture name rules) is what lets skip
connections and multi-branch blocks invalidate exactly the cuts they bypass. Edges into ``Shape`` and ``Size``
carry no values and are not followed: the tail recomputes what they give (``shape_edges.py``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import onnx

from common.errors import UnprocessableModel
from model_splitter.graph.inputs import node_inputs, real_inputs
from model_splitter.graph.shape_edges import is_shape_node


def ensure_cuttable(model: onnx.ModelProto) -> None:
    """Raise ``UnprocessableModel`` for graphs whose data flow the cut finder cannot see in full."""
    graph = model.graph
    if not real_inputs(graph):
        raise UnprocessableModel("the graph has no input that is fed at run time (only initializers); nothing to cut")
    if not graph.output:
        raise UnprocessableModel("the graph has no output; nothing to cut")
    producers: set[str] = set()
    for node in graph.node:
        for name in node.output:
            if name and name in producers:
                raise UnprocessableModel(
                    f"tensor {name!r} is produced by more than one node; the graph is not valid ONNX"
                )
            producers.add(name)


def topological_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in a topological order that keeps the file's order wherever the file already is topological."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    consumers: list[list[int]] = [[] for _ in nodes]
    missing = [0] * len(nodes)
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node_inputs(node) if name in producer}:
            consumers[source].append(index)
            missing[index] += 1
    ready = [index for index, count in enumerate(missing) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers[index]:
            missing[consumer] -= 1
            if missing[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) != len(nodes):
        raise UnprocessableModel("the graph contains a cycle; ONNX graphs must be acyclic")
    return [nodes[index] for index in order]


@dataclass(frozen=True)
class DataFlow:
    """The tensor-level view of a graph that cut finding, cutting and cost analysis share."""

    nodes: list[onnx.NodeProto]  # topological
    tensors: list[str]  # real inputs, then node outputs in node order: a topological order of tensors
    live: frozenset[str]  # reachable from a real input and reaching a graph output
    cuts: list[str]  # single-tensor cuts in topological order


@dataclass(frozen=True)
class TensorDag:
    """Tensors indexed in topological order; index 0 is a virtual source that feeds every real input."""

    nodes: list[onnx.NodeProto]  # topological
    inputs: list[str]
    tensors: list[str]  # "" (the virtual source), then real inputs, then node outputs in node order
    index: dict[str, int]
    preds: list[list[int]]  # tensor -> tensors its producer reads (the virtual source for real inputs)
    producer: list[int]  # tensor -> index of its node in ``nodes`` (-1 for the source and the real inputs)
    outputs: list[int]  # graph outputs that lie on the tensor DAG
    live: list[bool]  # reachable from a real input and reaching a graph output


def tensor_dag(model: onnx.ModelProto) -> TensorDag:
    ensure_cuttable(model)
    graph = model.graph
    nodes = topological_nodes(graph)
    inputs = real_inputs(graph)

    # Tensors get increasing indices in topological order, so a smaller index is never a descendant of a larger
    # one, which is what the dominator intersection below relies on.
    index: dict[str, int] = {}
    tensors: list[str] = [""]
    preds: list[list[int]] = [[]]
    producer: list[int] = [-1]
    for name in inputs:
        index[name] = len(tensors)
        tensors.append(name)
        preds.append([0])
        producer.append(-1)
    for position, node in enumerate(nodes):
        # Inputs with no index are initializers or constant-only outputs: they never lie on an input path.
        # A Shape or Size node reads dimensions, not values: not a data edge (see shape_edges.py).
        reads = [] if is_shape_node(node) else node_inputs(node)
        sources = sorted({index[name] for name in reads if name in index})
        for name in node.output:
            if name and name not in index:
                index[name] = len(tensors)
                tensors.append(name)
                preds.append(sources)
                producer.append(position)

    count = len(tensors)
    reach = [False] * count
    reach[0] = True
    for t in range(1, count):
        reach[t] = any(reach[p] for p in preds[t])
    outputs = sorted({index[value.name] for value in graph.output if value.name in index})
    coreach = [False] * count
    for t in outputs:
        coreach[t] = True
    for t in range(count - 1, 0, -1):  # successors have larger indices, so they are final when t is reached
        if coreach[t]:
            for p in preds[t]:
                coreach[p] = True
    live = [reach[t] and coreach[t] for t in range(count)]
    return TensorDag(nodes, inputs, tensors, index, preds, producer, outputs, live)


def data_flow(model: onnx.ModelProto) -> DataFlow:
    """Build the tensor DAG and find its single-tensor cuts as the dominators of the virtual sink."""
    dag = tensor_dag(model)
    nodes, inputs, tensors, index, preds, outputs, live = (
        dag.nodes,
        dag.inputs,
        dag.tensors,
        dag.index,
        dag.preds,
        dag.outputs,
        dag.live,
    )
    count = len(tensors)

    idom = list(range(count))

    def intersect(a: int, b: int) -> int:
        while a != b:
            while a > b:
                a = idom[a]
            while b > a:
                b = idom[b]
        return a

    def meet(candidates: list[int]) -> int:
        result = candidates[0]
        for other in candidates[1:]:
            result = intersect(result, other)
        return result

    # On a DAG visited in topological order every predecessor is final before its successor, so one
    # Cooper-Harvey-Kennedy pass gives the exact immediate dominators.
    for t in range(1, count):
        if live[t]:
            idom[t] = meet([p for p in preds[t] if live[p]])

    live_outputs = [t for t in outputs if live[t]]
    cuts: list[str] = []
    if live_outputs:
        excluded = {index[name] for name in inputs} | set(outputs)
        dominator = meet(live_outputs)
        while dominator != 0:
            if dominator not in excluded:
                cuts.append(tensors[dominator])
            dominator = idom[dominator]
        cuts.reverse()
    live_names = frozenset(tensors[t] for t in range(1, count) if live[t])
    return DataFlow(nodes=nodes, tensors=tensors[1:], live=live_names, cuts=cuts)


def find_single_tensor_cuts(model: onnx.ModelProto) -> list[str]:
    """Every tensor through which all input-to-output paths pass, in topological order (position in the network)."""
    return data_flow(model).cuts


# --- cuts of two tensors ---------------------------------------------------------------------------------------
#
# Where a network has few single-tensor cuts (dense connections, side inputs such as masks, or none at all), the
# head can send two tensors. k = 2 is the limit: the search is O(n^2) pairs over the live tensors of a stretch
# (pruned below to one dominator pass per tensor), every extra tensor multiplies it by n again, and a frame of
# three or more tensors rarely costs fewer bytes than the nearest single cut.
#
# The rule, so that only models that need them get pair cuts, and never many:
# * pairs are looked for only inside a *long stretch*: the live tensors strictly between two consecutive single
#   cuts (or the input / the output) when there are at least LONG_STRETCH_TENSORS of them, or anywhere in a model
#   without any single cut;
# * a pair {a, b} separates the graph (every input-to-output path passes through a or b), the tail reads both, and
#   no node runs on both sides (the head computes nothing the tail computes again). Either a and b both lie inside
#   the stretch (neither alone is a cut), or a is the single cut that opens the stretch and b lies inside it (the
#   only kind of pair a dense block offers: its input plus a tensor of its first layer);
# * of the partners b of one tensor a, only the one at the closest depth is kept (two parallel branches give their
#   "diagonal" pairs), at most MAX_PAIR_CUTS pairs per model, spread evenly over the network.

LONG_STRETCH_TENSORS = 24
MAX_PAIR_CUTS = 32
_MAX_CANDIDATES_PER_STRETCH = 400


def find_pair_cuts(
    model: onnx.ModelProto,
    limit: int = MAX_PAIR_CUTS,
    eligible: Callable[[str], bool] | None = None,
    min_stretch: int = LONG_STRETCH_TENSORS,
) -> list[tuple[str, str]]:
    """Cuts of two tensors (see the rule above), each pair in topological order, the pairs in network order.

    ``eligible`` restricts which tensors may be sent (the splitter passes "floating point, with a known shape").
    """
    dag = tensor_dag(model)
    count = len(dag.tensors)
    sink = count  # a virtual sink fed by the graph outputs
    single = [dag.index[name] for name in data_flow(model).cuts]
    succs: list[list[int]] = [[] for _ in range(count + 1)]
    for t in range(1, count):
        if dag.live[t]:
            for p in dag.preds[t]:
                if dag.live[p]:
                    succs[p].append(t)
    for t in dag.outputs:
        if dag.live[t]:
            succs[t].append(sink)
    preds_of = [[p for p in dag.preds[t] if dag.live[p]] for t in range(count)]
    preds_of.append([t for t in dag.outputs if dag.live[t]])
    excluded = {dag.index[name] for name in dag.inputs} | set(dag.outputs)

    def allowed(t: int) -> bool:
        if t in excluded or (eligible is not None and not eligible(dag.tensors[t])):
            return False
        node = dag.nodes[dag.producer[t]] if dag.producer[t] >= 0 else None
        # A copy (Identity, a Concat of one tensor) would send the same values twice.
        return node is None or not (
            node.op_type == "Identity" or (node.op_type == "Concat" and len([i for i in node.input if i]) == 1)
        )

    found: set[tuple[int, int]] = set()
    bounds = [0, *single, sink]
    for start, end in itertools.pairwise(bounds):
        stretch = [t for t in range(start + 1, min(end, count)) if dag.live[t]]
        if single and len(stretch) < min_stretch:
            continue
        candidates = [t for t in stretch if allowed(t)]
        if len(candidates) > _MAX_CANDIDATES_PER_STRETCH:
            stride = len(candidates) / _MAX_CANDIDATES_PER_STRETCH
            candidates = [candidates[int(i * stride)] for i in range(_MAX_CANDIDATES_PER_STRETCH)]
        members = {start, end, *stretch}
        depth = _depths(start, stretch, preds_of)
        wanted = set(candidates)

        def separates(pair: tuple[int, int], start: int = start, end: int = end, members: set[int] = members) -> bool:
            return _separates(pair, start, end, members, preds_of, dag.producer)

        for a in candidates:
            partners = [b for b in _dominators_without(start, end, stretch, a, preds_of, succs) if b in wanted]
            partners.sort(key=lambda t: (abs(depth[t] - depth[a]), t))
            pair = next((p for p in ((min(a, b), max(a, b)) for b in partners) if separates(p)), None)
            if pair is not None:
                found.add(pair)
        if start != 0 and allowed(start):
            found.update(pair for pair in ((start, b) for b in candidates) if separates(pair))
    ordered = sorted(found, key=lambda pair: (pair[1], pair[0]))
    if len(ordered) > limit:
        stride = len(ordered) / limit
        ordered = [ordered[int(i * stride)] for i in range(limit)]
    return [(dag.tensors[a], dag.tensors[b]) for a, b in ordered]


def _depths(start: int, stretch: list[int], preds_of: list[list[int]]) -> dict[int, int]:
    """Longest path length from ``start`` inside the stretch (tensors are in topological order)."""
    depth = {start: 0}
    for t in stretch:
        depth[t] = 1 + max((depth[p] for p in preds_of[t] if p in depth), default=0)
    return depth


def _dominators_without(
    start: int, end: int, stretch: list[int], removed: int, preds_of: list[list[int]], succs: list[list[int]]
) -> list[int]:
    """Tensors of the stretch through which every start-to-end path passes once ``removed`` is taken out."""
    order = [start, *stretch, end]
    reach = {start}
    for t in order[1:]:
        if t != removed and any(p in reach for p in preds_of[t]):
            reach.add(t)
    if end not in reach:
        return []  # ``removed`` alone separates: a single cut, which pairs never contain
    coreach = {end}
    for t in reversed(order[:-1]):
        if t in reach and any(s in coreach for s in succs[t]):
            coreach.add(t)
    position = {t: i for i, t in enumerate(order)}
    idom: dict[int, int] = {start: start}

    def intersect(a: int, b: int) -> int:
        while a != b:
            while position[a] > position[b]:
                a = idom[a]
            while position[b] > position[a]:
                b = idom[b]
        return a

    for t in order[1:]:
        if t in coreach:
            known = [p for p in preds_of[t] if p in coreach and p in idom]
            result = known[0]
            for other in known[1:]:
                result = intersect(result, other)
            idom[t] = result
    dominators: list[int] = []
    walk = idom[end]
    while walk != start:
        dominators.append(walk)
        walk = idom[walk]
    return dominators


def _separates(
    pair: tuple[int, int], start: int, end: int, members: set[int], preds_of: list[list[int]], producer: list[int]
) -> bool:
    """The tail (from ``end`` back to the pair) reads both tensors and nothing the head (the pair's ancestors back
    to ``start``) computes, and never needs a tensor from before the stretch."""
    stop = set(pair)
    head: set[int] = set()
    pending = list(pair)
    while pending:
        t = pending.pop()
        if t in head or t == start or t not in members:
            continue
        head.add(t)
        pending.extend(preds_of[t])
    tail: set[int] = set()
    leaves: set[int] = set()
    pending = list(preds_of[end]) if end in members else []
    while pending:
        t = pending.pop()
        if t in tail or t in leaves:
            continue
        if t in stop:
            leaves.add(t)
            continue
        if t == start or t not in members:
            return False  # the tail would need a tensor the head does not send
        tail.add(t)
        pending.extend(preds_of[t])
    head_nodes = {producer[t] for t in head} - {-1}
    return leaves == stop and not head_nodes & {producer[t] for t in tail}
