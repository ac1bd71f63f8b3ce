"""Auto-split: predict every plan's latency from measured profiles and the link, gate it on fidelity, rank.

Candidates: all-robot, all-edge (the encoded image on the link), and every split point at every bit width. One
plan's predicted latency (``docs/planner.md`` derives it)::

    total = robot_ms + transfer_ms + rtt_ms + edge_ms
    transfer_ms = (request bytes + response bytes) * 8 / (bandwidth_mbps * 1e6) * 1e3

    split p at b bits:  robot = decode + preprocess + head(p) + encode_ns[b] * elements(p)
                        edge  = decode_ns[b] * elements(p) + tail(p) + postprocess
                        request bytes = ceil(elements(p) * b / 8) + frame header
    all-robot:          robot = decode + preprocess + full + postprocess; nothing on the link, no round trip
    all-edge:           edge  = decode + preprocess + full + postprocess; request bytes = image + frame header

``head(p)`` on the robot is the robot's whole-model time times the share of the robot's per-node profile that
falls on the nodes computing p (the ancestors of p's tensor); ``tail(p)`` on the edge is the edge's whole-model
time times the share of the edge's profile on the other nodes. A profile whose node names match none of the graph's
(a provider that compiles the graph into one node) falls back to the split point's share of FLOPs.

A plan is eligible when its fidelity passes the floor (top-1 agreement and output cosine on the calibration
images). float32 features are lossless; without calibration data float16 is taken as lossless too and 8-bit and
narrower plans are not eligible (they are, if the floor is switched off: ``min_top1 <= 0`` and ``min_cosine <= -1``).

Everything here is pure: no I/O, no clocks; the routes (``model_splitter/api/plans.py``) gather the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import onnx
from pydantic import BaseModel, Field

from common.profiling import ProfileResult
from common.wire import frame_overhead

PLAN_BITS = (2, 4, 8, 16, 32)
DEFAULT_MIN_TOP1 = 0.99
DEFAULT_MIN_COSINE = 0.99
# Per task, the default floors on (answer agreement, output cosine). A detector's or segmenter's raw outputs are
# score maps whose cosine says little about the boxes or the mask: their floor is on the answers alone.
TASK_FLOORS = {
    "classification": (DEFAULT_MIN_TOP1, DEFAULT_MIN_COSINE),
    "detection": (0.95, -1.0),
    "segmentation": (0.95, -1.0),
    "raw": (0.99, DEFAULT_MIN_COSINE),
}
# The edge's JSON answer (top-5 with labels, stage timings) is about 1.1-1.2 kB for an ImageNet classifier.
DEFAULT_RESPONSE_BYTES = 1200
IMAGE_TENSOR_NAME = "image"

PlanMode = Literal["split", "all-robot", "all-edge"]


class FidelityLike(Protocol):
    """What calibration measures for one (split point, bits): ``model_splitter.quantize.calibration.Fidelity``."""

    @property
    def top1_agreement(self) -> float: ...

    @property
    def answer_agreement(self) -> float:
        """Top-1 agreement for a classifier; for other tasks the share of images whose answer agrees."""
        ...

    @property
    def task_name(self) -> str | None:
        """None for a classifier, else the task whose answers ``answer_agreement`` compares."""
        ...

    @property
    def cosine(self) -> float: ...

    @property
    def coded_bytes(self) -> int | None:
        """Mean payload per image after Zstandard coding, where calibration measured it."""
        ...


@dataclass(frozen=True)
class SideProfile:
    """One side's measured costs, as the planner uses them (see ``common.profiling``)."""

    provider: str
    total_ms: float
    nodes: Mapping[str, float] = field(default_factory=dict)
    stages_ms: Mapping[str, float] = field(default_factory=dict)
    encode_ns_per_element: Mapping[int, float] = field(default_factory=dict)
    decode_ns_per_element: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, result: ProfileResult) -> SideProfile:
        return cls(
            provider=result.provider,
            total_ms=result.total_ms,
            nodes=dict(result.nodes),
            stages_ms=dict(result.stages_ms),
            encode_ns_per_element={int(k): v for k, v in result.encode_ns_per_element.items()},
            decode_ns_per_element={int(k): v for k, v in result.decode_ns_per_element.items()},
        )

    def stage(self, name: str) -> float:
        return float(self.stages_ms.get(name, 0.0))

    def share(self, head_nodes: frozenset[str], graph_nodes: frozenset[str]) -> float | None:
        """Share of this side's profiled time on ``head_nodes``; None when no profiled node is a graph node."""
        mapped = {name: ms for name, ms in self.nodes.items() if name in graph_nodes}
        denominator = sum(mapped.values())
        if denominator <= 0:
            return None
        return sum(ms for name, ms in mapped.items() if name in head_nodes) / denominator


@dataclass(frozen=True)
class Candidate:
    """A split point with what the planner needs of it."""

    label: str
    tensor: str
    shape: Sequence[int]
    elements: int
    wire_bytes: Mapping[int, int]
    head_flops_share: float
    head_nodes: frozenset[str]


@dataclass(frozen=True)
class Floor:
    min_top1: float = DEFAULT_MIN_TOP1
    min_cosine: float = DEFAULT_MIN_COSINE

    @property
    def off(self) -> bool:
        return self.min_top1 <= 0 and self.min_cosine <= -1

    @classmethod
    def of(cls, min_top1: float | None, min_cosine: float | None, task: str = "classification") -> Floor:
        """The floors asked for, the task's defaults for those not given."""
        default_agreement, default_cosine = TASK_FLOORS.get(task, TASK_FLOORS["classification"])
        return cls(
            as_fraction(min_top1) if min_top1 is not None else default_agreement,
            min_cosine if min_cosine is not None else default_cosine,
        )


@dataclass(frozen=True)
class PlannerInputs:
    candidates: Sequence[Candidate]
    graph_nodes: frozenset[str]
    robot: SideProfile
    edge: SideProfile
    image_bytes: int
    fidelity: Mapping[tuple[str, int], FidelityLike] | None = None
    floor: Floor = Floor()
    response_bytes: int = DEFAULT_RESPONSE_BYTES
    bits: Sequence[int] = PLAN_BITS
    robot_scale: float = 1.0  # what-if: the robot's compute this many times slower (2.0) or faster (0.5)
    edge_scale: float = 1.0


class FidelityInfo(BaseModel):
    top1_agreement: float | None = Field(
        None,
        description="share of calibration images whose answer agrees with the float model's: the same top-1 for a "
        "classifier; for a detector, segmenter or raw outputs as the task judges it (the floor min_top1 applies)",
    )
    cosine: float | None = Field(None, description="cosine of split and float outputs")
    source: Literal["exact", "calibration", "assumed", "unknown"]


class PlanEstimate(BaseModel):
    key: str = Field(description="all-robot, all-edge or <split point>@<bits>b")
    mode: PlanMode
    split_point: str | None = None
    tensor: str | None = None
    bits: int | None = None
    robot_ms: float
    transfer_ms: float
    rtt_ms: float
    edge_ms: float
    total_ms: float
    bytes: int = Field(description="request body robot -> edge (0 for all-robot)")
    response_bytes: int
    head_share: float | None = Field(None, description="share of the model's compute in the head (split plans)")
    share_source: Literal["profile", "flops"] | None = None
    fidelity: FidelityInfo
    eligible: bool
    reason: str
    rank: int | None = Field(None, description="1 = the pick; None for plans below the fidelity floor")


# --- graph ------------------------------------------------------------------------------------------------------


def head_node_sets(model: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, frozenset[str]]:
    """For each cut tensor, the names of the nodes that compute it (its ancestors): the head's nodes."""
    nodes = list(model.graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    result: dict[str, frozenset[str]] = {}
    for tensor in tensors:
        seen: set[int] = set()
        stack = [producer[tensor]] if tensor in producer else []
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            stack.extend(producer[name] for name in nodes[index].input if name in producer)
        result[tensor] = frozenset(nodes[i].name for i in seen if nodes[i].name)
    return result


def graph_node_names(model: onnx.ModelProto) -> frozenset[str]:
    return frozenset(node.name for node in model.graph.node if node.name)


# --- arithmetic -------------------------------------------------------------------------------------------------


def as_fraction(value: float) -> float:
    """0.99 stays 0.99; 99 (a percentage) becomes 0.99."""
    return value / 100.0 if value > 1.0 else value


def transfer_ms(nbytes: float, bandwidth_mbps: float) -> float:
    if bandwidth_mbps <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth_mbps}")
    return nbytes * 8.0 / (bandwidth_mbps * 1e6) * 1e3


def _fidelity(inputs: PlannerInputs, label: str, bits: int) -> tuple[FidelityInfo, bool, str]:
    floor = inputs.floor
    measured = inputs.fidelity.get((label, bits)) if inputs.fidelity is not None else None
    if bits >= 32:
        return _exact(), True, "float32 features: the split computes the unsplit model"
    if measured is not None:
        top1 = as_fraction(float(measured.answer_agreement))
        kind = "top-1 agreement" if measured.task_name is None else f"{measured.task_name} agreement"
        cosine = float(measured.cosine)
        info = FidelityInfo(top1_agreement=round(top1, 6), cosine=round(cosine, 6), source="calibration")
        failures = []
        if top1 < floor.min_top1:
            failures.append(f"{kind} {top1:.1%} < {floor.min_top1:.1%}")
        if cosine < floor.min_cosine:
            failures.append(f"output cosine {cosine:.4f} < {floor.min_cosine:.4f}")
        if failures:
            return info, False, "below the fidelity floor: " + "; ".join(failures)
        return info, True, f"calibrated: {kind} {top1:.1%}, cosine {cosine:.4f}"
    if bits == 16:
        return FidelityInfo(source="assumed"), True, "float16 features: taken as lossless (not calibrated)"
    if floor.off:
        return FidelityInfo(source="unknown"), True, "not calibrated; the fidelity floor is off"
    return (
        FidelityInfo(source="unknown"),
        False,
        f"not calibrated: {bits}-bit features need calibration data to pass the fidelity floor",
    )


def _exact() -> FidelityInfo:
    return FidelityInfo(top1_agreement=1.0, cosine=1.0, source="exact")


def estimate_plans(inputs: PlannerInputs, bandwidth_mbps: float, rtt_ms: float) -> list[PlanEstimate]:
    """Every plan's predicted latency and eligibility, unranked (``rank_plans`` orders them)."""
    robot, edge, rs, es = inputs.robot, inputs.edge, inputs.robot_scale, inputs.edge_scale
    response = inputs.response_bytes
    robot_pre = robot.stage("decode") + robot.stage("preprocess")
    plans: list[PlanEstimate] = []

    all_robot = rs * (robot_pre + robot.total_ms + robot.stage("postprocess"))
    plans.append(
        _plan("all-robot", None, None, all_robot, 0.0, 0.0, 0.0, 0, 0, _exact(), True, "the full model on the robot")
    )

    image_frame = inputs.image_bytes + frame_overhead([(IMAGE_TENSOR_NAME, 1)])
    all_edge_ms = es * (edge.stage("decode") + edge.stage("preprocess") + edge.total_ms + edge.stage("postprocess"))
    plans.append(
        _plan(
            "all-edge",
            None,
            None,
            0.0,
            transfer_ms(image_frame + response, bandwidth_mbps),
            rtt_ms,
            all_edge_ms,
            image_frame,
            response,
            _exact(),
            True,
            "the encoded image to the full model on the edge",
        )
    )

    for candidate in inputs.candidates:
        robot_share = robot.share(candidate.head_nodes, inputs.graph_nodes)
        edge_share = edge.share(candidate.head_nodes, inputs.graph_nodes)
        source: Literal["profile", "flops"] = "profile"
        if robot_share is None or edge_share is None:
            source = "flops"
        head_share_robot = robot_share if robot_share is not None else candidate.head_flops_share
        head_share_edge = edge_share if edge_share is not None else candidate.head_flops_share
        head_ms = head_share_robot * robot.total_ms
        tail_ms = (1.0 - head_share_edge) * edge.total_ms
        frame_extra = frame_overhead([(candidate.tensor, len(candidate.shape))])
        for bits in inputs.bits:
            payload = candidate.wire_bytes.get(bits, math.ceil(candidate.elements * bits / 8))
            measured = inputs.fidelity.get((candidate.label, bits)) if inputs.fidelity is not None else None
            if measured is not None and measured.coded_bytes is not None:
                payload = min(payload, measured.coded_bytes)  # what the robot sends: coded where that is shorter
            sent = payload + frame_extra
            encode = robot.encode_ns_per_element.get(bits, 0.0) * candidate.elements / 1e6
            decode = edge.decode_ns_per_element.get(bits, 0.0) * candidate.elements / 1e6
            info, eligible, reason = _fidelity(inputs, candidate.label, bits)
            plan = _plan(
                "split",
                candidate,
                bits,
                rs * (robot_pre + head_ms + encode),
                transfer_ms(sent + response, bandwidth_mbps),
                rtt_ms,
                es * (decode + tail_ms + edge.stage("postprocess")),
                sent,
                response,
                info,
                eligible,
                reason,
            )
            plans.append(plan.model_copy(update={"head_share": round(head_share_robot, 6), "share_source": source}))
    return plans


def _plan(
    mode: PlanMode,
    candidate: Candidate | None,
    bits: int | None,
    robot_ms: float,
    link_ms: float,
    rtt_ms: float,
    edge_ms: float,
    sent: int,
    response: int,
    fidelity: FidelityInfo,
    eligible: bool,
    reason: str,
) -> PlanEstimate:
    key = mode if candidate is None else f"{candidate.label}@{bits}b"
    return PlanEstimate(
        key=key,
        mode=mode,
        split_point=candidate.label if candidate is not None else None,
        tensor=candidate.tensor if candidate is not None else None,
        bits=bits,
        robot_ms=round(robot_ms, 3),
        transfer_ms=round(link_ms, 3),
        rtt_ms=round(rtt_ms, 3),
        edge_ms=round(edge_ms, 3),
        total_ms=round(robot_ms + link_ms + rtt_ms + edge_ms, 3),
        bytes=sent,
        response_bytes=response if mode != "all-robot" else 0,
        fidelity=fidelity,
        eligible=eligible,
        reason=reason,
    )


def rank_plans(plans: Iterable[PlanEstimate]) -> list[PlanEstimate]:
    """Eligible plans fastest first (ties: fewer bytes, then fewer bits), ranked 1..n; then the ineligible ones."""

    def order(plan: PlanEstimate) -> tuple[bool, float, int, int]:
        return (not plan.eligible, plan.total_ms, plan.bytes, plan.bits or 0)

    ranked: list[PlanEstimate] = []
    position = 0
    for plan in sorted(plans, key=order):
        if plan.eligible:
            position += 1
            ranked.append(plan.model_copy(update={"rank": position}))
        else:
            ranked.append(plan.model_copy(update={"rank": None}))
    return ranked


def plan(inputs: PlannerInputs, bandwidth_mbps: float, rtt_ms: float) -> tuple[list[PlanEstimate], PlanEstimate]:
    """Ranked plans and the pick (the fastest eligible plan; all-robot and all-edge always are)."""
    ranked = rank_plans(estimate_plans(inputs, bandwidth_mbps, rtt_ms))
    return ranked, ranked[0]
