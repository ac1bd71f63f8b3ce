"""Gathering the planner's inputs (profiles, link, fidelity, graph) and deploying its pick.

The arithmetic is in ``model_splitter/planning/`` (``planner.py``, ``curve.py``); this module does the I/O
around it: the robot and the edge profile the full model of a split they both hold, the robot probes the link when
the caller gives no bandwidth or round trip, calibration (when the model has been calibrated) gives each plan's
fidelity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import onnx
from pydantic import BaseModel, Field

from common.errors import Conflict, InvalidArgument
from common.profiling import LinkProbeResult, ProfileResult
from common.results import Mode
from model_splitter.planning.curve import PlanCurve, curve
from model_splitter.planning.planner import (
    DEFAULT_RESPONSE_BYTES,
    Candidate,
    Floor,
    PlanEstimate,
    PlannerInputs,
    SideProfile,
    graph_node_names,
    head_node_sets,
    plan,
)
from model_splitter.records import ModelRecord, Progress, SplitRequest, no_progress
from model_splitter.services.calibration import load_fidelity
from model_splitter.services.peers import PeerDeployment, Peers
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from model_splitter.store.samples import DEFAULT_SAMPLE, sample_path

DEFAULT_CURVE_BANDWIDTHS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
MAX_CURVE_POINTS = 64


@dataclass(frozen=True)
class PlanParams:
    bandwidth_mbps: float | None = None
    rtt_ms: float | None = None
    min_top1: float | None = None
    min_cosine: float | None = None
    image_bytes: int | None = None
    robot_scale: float = 1.0
    edge_scale: float = 1.0


@dataclass(frozen=True)
class GatheredInputs:
    """Everything one plan is computed from: the model, the split both sides profiled, their profiles, notes."""

    record: ModelRecord
    split_id: str
    planner: PlannerInputs
    robot: ProfileResult
    edge: ProfileResult
    notes: list[str]


class LinkInfo(BaseModel):
    bandwidth_mbps: float
    rtt_ms: float
    bandwidth_source: Literal["given", "measured"]
    rtt_source: Literal["given", "measured"]
    probe: LinkProbeResult | None = Field(None, description="the robot's probe, when anything was measured")


class ProfileSummary(BaseModel):
    provider: str
    total_ms: float
    node_profile_provider: str
    nodes_profiled: int
    stages_ms: dict[str, float]
    measured_at: str
    cached: bool

    @classmethod
    def of(cls, result: ProfileResult) -> ProfileSummary:
        return cls(
            provider=result.provider,
            total_ms=result.total_ms,
            node_profile_provider=result.node_profile_provider,
            nodes_profiled=len(result.nodes),
            stages_ms=result.stages_ms,
            measured_at=result.measured_at,
            cached=result.cached,
        )


class FloorInfo(BaseModel):
    min_top1: float
    min_cosine: float


class PlanResponse(BaseModel):
    model_id: str
    model_name: str
    profiled_split_id: str = Field(description="the deployed split whose full model robot and edge profiled")
    link: LinkInfo
    image_bytes: int
    response_bytes: int
    floor: FloorInfo
    calibrated: bool
    notes: list[str]
    robot: ProfileSummary
    edge: ProfileSummary
    pick: PlanEstimate
    plans: list[PlanEstimate]


class PlanDeployment(PlanResponse):
    mode: Mode = Field(description="the mode to send to the robot's /api/infer for this plan")
    split_id: str = Field(description="the split deployed (for all-robot / all-edge: any split of the model)")
    created_split: bool
    deployed: PeerDeployment


class PlanCurveResponse(PlanCurve):
    model_id: str
    rtt_source: Literal["given", "measured"]
    calibrated: bool
    notes: list[str]


def parse_bandwidths(text: str | None) -> list[float]:
    if not text:
        return list(DEFAULT_CURVE_BANDWIDTHS)
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise InvalidArgument(f"bandwidths must be a comma list of Mbit/s, e.g. 1,10,100; got {text!r}") from exc
    if not values or values[0] < 1e-3 or values[-1] > 1e6 or len(values) > MAX_CURVE_POINTS:
        raise InvalidArgument(
            f"bandwidths must be 1..{MAX_CURVE_POINTS} values from 0.001 to 1000000 Mbit/s, got {text[:200]!r}"
        )
    return values


class PlanService:
    def __init__(self, registry: Registry, peers: Peers) -> None:
        self.registry = registry
        self.peers = peers
        self._graphs: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    # --- inputs -------------------------------------------------------------------------------------------------

    def _graph(self, record: ModelRecord) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
        with self._lock:
            cached = self._graphs.get(record.sha256)
        if cached is not None:
            return cached
        model = onnx.load(str(self.registry.model_onnx_path(record.id)))
        found = (graph_node_names(model), head_node_sets(model, [p.tensor for p in record.split_points]))
        with self._lock:
            self._graphs[record.sha256] = found
        return found

    def deployed_split(self, model_id: str) -> str:
        """A split of the model that both robot and edge hold (the robot's most recent one)."""
        peers = self.peers
        edge = {d.split_id for d in peers.deployed("edge") if d.model_id == model_id}
        robot = [d.split_id for d in peers.deployed("robot") if d.model_id == model_id]
        both = [split_id for split_id in robot if split_id in edge]
        if not both:
            raise Conflict(
                f"no split of model {model_id} is deployed on both robot and edge, so neither can profile it: deploy "
                f"any split of it first (POST /api/models/{model_id}/splits, then POST /api/splits/<id>/deploy)"
            )
        return both[-1]

    def link(self, params: PlanParams) -> LinkInfo:
        bandwidth, rtt = params.bandwidth_mbps, params.rtt_ms
        probe = self.peers.probe_link() if bandwidth is None or rtt is None else None
        return LinkInfo(
            bandwidth_mbps=bandwidth if bandwidth is not None else _measured(probe).throughput_mbps,
            rtt_ms=rtt if rtt is not None else _measured(probe).rtt_ms,
            bandwidth_source="given" if bandwidth is not None else "measured",
            rtt_source="given" if rtt is not None else "measured",
            probe=probe,
        )

    def inputs(self, model_id: str, params: PlanParams, progress: Progress = no_progress) -> GatheredInputs:
        registry = self.registry
        record = registry.get_model(model_id)
        progress("finding a split both robot and edge hold")
        split_id = self.deployed_split(model_id)
        image = sample_path(DEFAULT_SAMPLE).read_bytes()
        progress("the robot times the model (cached after the first time)")
        robot = self.peers.profile("robot", split_id, image)
        progress("the edge times the model (cached after the first time)")
        edge = self.peers.profile("edge", split_id, image)
        graph_nodes, heads = self._graph(record)
        candidates = [
            Candidate(
                label=p.label,
                tensor=p.tensor,
                shape=p.shape,
                elements=p.elements,
                wire_bytes={int(bits): size for bits, size in p.wire_bytes.items()},
                head_flops_share=p.head_flops_share,
                head_nodes=heads.get(p.tensor, frozenset()),
            )
            for p in record.split_points
        ]
        fidelity = load_fidelity(registry, model_id)
        notes = []
        if fidelity is None:
            notes.append(
                "no calibration for this model: only float16/float32 splits, all-robot and all-edge pass the fidelity "
                f"floor; POST /api/models/{model_id}/calibrate measures the quantized plans"
            )
        side_robot, side_edge = SideProfile.of(robot), SideProfile.of(edge)
        for side, profile in (("robot", side_robot), ("edge", side_edge)):
            if profile.share(frozenset(), graph_nodes) is None:
                notes.append(f"the {side}'s per-node profile matches no graph node: head/tail split by FLOPs share")
        inputs = PlannerInputs(
            candidates=candidates,
            graph_nodes=graph_nodes,
            robot=side_robot,
            edge=side_edge,
            image_bytes=params.image_bytes if params.image_bytes is not None else len(image),
            fidelity=fidelity,
            floor=Floor.of(params.min_top1, params.min_cosine, record.postprocessing.task),
            response_bytes=DEFAULT_RESPONSE_BYTES,
            robot_scale=params.robot_scale,
            edge_scale=params.edge_scale,
        )
        return GatheredInputs(record=record, split_id=split_id, planner=inputs, robot=robot, edge=edge, notes=notes)

    # --- the three operations -------------------------------------------------------------------------------------

    def plan(self, model_id: str, params: PlanParams, progress: Progress = no_progress) -> PlanResponse:
        gathered = self.inputs(model_id, params, progress)
        record, inputs = gathered.record, gathered.planner
        if params.bandwidth_mbps is None or params.rtt_ms is None:
            progress("the robot measures its link to the edge")
        link = self.link(params)
        progress("ranking the plans")
        ranked, pick = plan(inputs, link.bandwidth_mbps, link.rtt_ms)
        return PlanResponse(
            model_id=record.id,
            model_name=record.name,
            profiled_split_id=gathered.split_id,
            link=link,
            image_bytes=inputs.image_bytes,
            response_bytes=inputs.response_bytes,
            floor=FloorInfo(min_top1=inputs.floor.min_top1, min_cosine=inputs.floor.min_cosine),
            calibrated=inputs.fidelity is not None,
            notes=gathered.notes,
            robot=ProfileSummary.of(gathered.robot),
            edge=ProfileSummary.of(gathered.edge),
            pick=pick,
            plans=ranked,
        )

    def deploy(self, model_id: str, params: PlanParams, progress: Progress = no_progress) -> PlanDeployment:
        """Plan, then create and deploy the pick (all-robot / all-edge: make the profiled split the active one)."""
        planned = self.plan(model_id, params, progress)
        pick = planned.pick
        created = False
        if pick.mode == "split":
            assert pick.tensor is not None and pick.bits is not None
            fields: dict[str, Any] = {"split_point": pick.tensor, "bits": pick.bits}
            if planned.calibrated and pick.bits <= 8:
                fields["clip"] = "calibrated"
            manifest = create_split(self.registry, model_id, SplitRequest.model_validate(fields), progress)
            split_id = manifest.id
            created = True
        else:
            split_id = planned.profiled_split_id
        deployed = self.peers.deploy(split_id, progress)
        return PlanDeployment(
            **planned.model_dump(), mode=pick.mode, split_id=split_id, created_split=created, deployed=deployed
        )

    def curve(self, model_id: str, params: PlanParams, bandwidths: Sequence[float], top: int) -> PlanCurveResponse:
        gathered = self.inputs(model_id, params)
        inputs = gathered.planner
        rtt_source: Literal["given", "measured"] = "given"
        rtt = params.rtt_ms
        if rtt is None:
            rtt = self.peers.probe_link().rtt_ms
            rtt_source = "measured"
        found = curve(inputs, bandwidths, rtt, top)
        return PlanCurveResponse(
            **found.model_dump(),
            model_id=model_id,
            rtt_source=rtt_source,
            calibrated=inputs.fidelity is not None,
            notes=gathered.notes,
        )


def _measured(probe: LinkProbeResult | None) -> LinkProbeResult:
    assert probe is not None  # link() probes whenever a value is missing
    return probe
