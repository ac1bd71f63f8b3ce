"""Cuts through k tensors: the cheapest set of tensors to send at each depth, as a minimum cut on bytes.

The DADS formulation on the tensor DAG (``cuts.tensor_dag``): every live tensor is an edge ``in -> out`` whose
capacity is its size in bytes (unbounded for what cannot be sent: graph inputs and outputs, integer tensors,
tensors of unknown shape); a tensor's producer reads reach it by unbounded edges ``pred.out -> t.in``; and unbounded
edges ``t.in -> pred.in`` and between the outputs of one node keep the head closed, so the head computes every
ancestor of what it sends and no node runs on both sides. A minimum source-sink cut then sends exactly the tensors
whose ``in`` is on the head's side and ``out`` on the tail's. Bytes alone would always pick the network's last
small tensor, so each cut is looked for in a window: the tensors up to a depth (longest path from the input) are
forced into the head, those a few layers deeper into the tail (unbounded edges from the source, to the sink), and
the cheapest cut in between is kept; sampling depths along the network gives cuts along it. Single tensors and
pairs come from ``cuts.py`` already (the cheapest cut in a window often is one of them); this adds the cuts of three
to ``MAX_CUT_TENSORS`` tensors (a frame carries at most 16), which is where networks with parallel paths (an FPN's
four feature maps, dense blocks) can be cut at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import networkx as nx
import onnx

from model_splitter.graph.cuts import TensorDag, tensor_dag

MAX_CUT_TENSORS = 16
MAX_DEPTHS = 48  # min-cuts computed per model: each is a max-flow on about twice the live tensors
MAX_K_CUTS = 24

Node = tuple[int, str]
SOURCE: Node = (0, "in")
SINK: Node = (-1, "sink")


def find_k_cuts(
    model: onnx.ModelProto, size_of: Callable[[str], int | None], min_tensors: int = 3
) -> list[tuple[str, ...]]:
    """Cuts of ``min_tensors`` to ``MAX_CUT_TENSORS`` tensors, each in topological order, in network order.

    ``size_of``: a tensor's bytes on the wire, None where it cannot be sent.
    """
    dag = tensor_dag(model)
    live = [t for t in range(1, len(dag.tensors)) if dag.live[t]]
    if not live or not any(dag.live[t] for t in dag.outputs):
        return []
    graph = _flow_graph(dag, live, size_of)
    depth = _depths(dag, live)
    deepest = max(depth.values())
    window = max(2, deepest // 16)
    levels = list(range(1, max(deepest - window, 1)))
    if len(levels) > MAX_DEPTHS:
        stride = len(levels) / MAX_DEPTHS
        levels = [levels[int(i * stride)] for i in range(MAX_DEPTHS)]
    found: set[tuple[int, ...]] = set()
    for level in levels:
        forced = graph.copy()
        for t in live:
            if depth[t] <= level:
                forced.add_edge(SOURCE, (t, "in"))
            elif depth[t] > level + window:
                forced.add_edge((t, "in"), SINK)  # computed by the tail
        try:
            value, (head, _) = nx.minimum_cut(forced, SOURCE, SINK)
        except nx.NetworkXUnbounded:
            continue  # nothing sendable separates the graph in this window
        if value == float("inf"):
            continue
        tail = {t for t in live if (t, "in") not in head}
        read = {p for t in tail for p in dag.preds[t]} | set(dag.outputs)
        # What the tail reads of what the head computes: a tensor the head also computes but nothing in the tail
        # reads is not sent (it costs nothing in the flow, so the cut may hold it).
        sent = tuple(sorted(t for t in live if (t, "in") in head and (t, "out") not in head and t in read))
        if min_tensors <= len(sent) <= MAX_CUT_TENSORS:
            found.add(sent)
    ordered = sorted(found, key=lambda cut: (max(cut), cut))
    if len(ordered) > MAX_K_CUTS:
        stride = len(ordered) / MAX_K_CUTS
        ordered = [ordered[int(i * stride)] for i in range(MAX_K_CUTS)]
    return [tuple(dag.tensors[t] for t in cut) for cut in ordered]


def _depths(dag: TensorDag, live: list[int]) -> dict[int, int]:
    """Longest path from the input, in tensors (tensor indices are topological)."""
    depth: dict[int, int] = {0: 0}
    for t in live:
        depth[t] = 1 + max((depth[p] for p in dag.preds[t] if p in depth), default=0)
    return depth


def _flow_graph(dag: TensorDag, live: list[int], size_of: Callable[[str], int | None]) -> nx.DiGraph:
    graph = nx.DiGraph()
    excluded = {dag.index[name] for name in dag.inputs} | set(dag.outputs)
    alive = set(live)
    graph.add_edge(SOURCE, (0, "out"))  # the virtual source tensor, which feeds every real input
    by_node: dict[int, list[int]] = {}
    for t in live:
        size = None if t in excluded else size_of(dag.tensors[t])
        if size is None:
            graph.add_edge((t, "in"), (t, "out"))  # no capacity attribute: unbounded
        else:
            graph.add_edge((t, "in"), (t, "out"), capacity=max(size, 1))
        for p in dag.preds[t]:
            if p == 0 or p in alive:
                graph.add_edge((p, "out"), (t, "in"))
                if p != 0:
                    graph.add_edge((t, "in"), (p, "in"))  # what the head sends, it computes from its ancestors
        if dag.producer[t] >= 0:
            by_node.setdefault(dag.producer[t], []).append(t)
    for siblings in by_node.values():  # the outputs of one node are computed on one side
        for a, b in itertools.pairwise(siblings):
            graph.add_edge((a, "in"), (b, "in"))
            graph.add_edge((b, "in"), (a, "in"))
    for t in dag.outputs:
        if t in alive:
            graph.add_edge((t, "out"), SINK)
    return graph
