"""Gathering the planner's inputs (profiles, link, fidelity, graph) and deploying its pick.

The arithmetic is in ``model_splitter/planner.py`` and ``model_splitter/plan_curve.py``; this module does the I/O
around it: the robot and the edge profile the full model of a split they both hold, the robot probes the link when
the caller gives no bandwidth or round trip, calibration (when the model has been calibrated) gives each plan's
fidelity.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import onnx
from pydantic import BaseModel, Field

from common.errors import Conflict, InvalidArgument
from common.profiling import LinkProbeResult, ProfileResult
from common.results import Mode
from model_splitter.context import SplitterContext
from model_splitter.plan_curve import PlanCurve, curve
from model_splitter.planner import (
    DEFAULT_RESPONSE_BYTES,
    Candidate,
    FidelityLike,
    Floor,
    PlanEstimate,
    PlannerInputs,
    SideProfile,
    graph_node_names,
    head_node_sets,
    plan,
)
from model_splitter.registry import Registry
from model_splitter.schemas import ModelRecord, SplitRequest
from model_splitter.split_service import create_split

SAMPLE_IMAGE = Path(__file__).resolve().parent / "data" / "samples" / "chelsea.jpg"
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
    deployed: dict[str, Any]


class PlanCurveResponse(PlanCurve):
    model_id: str
    rtt_source: Literal["given", "measured"]
    calibrated: bool
    notes: list[str]


def load_fidelity(registry: Registry, model_id: str) -> Mapping[tuple[str, int], FidelityLike] | None:
    """Calibration's per-(split point, bits) fidelity, or None (not calibrated, or no calibration module)."""
    try:
        module = importlib.import_module("model_splitter.calibration")
    except ModuleNotFoundError as exc:
        if exc.name == "model_splitter.calibration":
            return None
        raise
    loader = getattr(module, "load_fidelity", None)
    if loader is None:
        return None
    return cast("Mapping[tuple[str, int], FidelityLike] | None", loader(registry, model_id))


def parse_bandwidths(text: str | None) -> list[float]:
    if not text:
        return list(DEFAULT_CURVE_BANDWIDTHS)
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise InvalidArgument(f"bandwidths must be a comma list of Mbit/s, e.g. 1,10,100; got {text!r}") from exc
    if not values or values[0] <= 0 or len(values) > MAX_CURVE_POINTS:
        raise InvalidArgument(f"bandwidths must be 1..{MAX_CURVE_POINTS} positive Mbit/s values, got {text!r}")
    return values


class PlanService:
    def __init__(self, context: SplitterContext) -> None:
        self.context = context
        self._graphs: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    # --- inputs -------------------------------------------------------------------------------------------------

    def _graph(self, record: ModelRecord) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
        with self._lock:
            cached = self._graphs.get(record.sha256)
        if cached is not None:
            return cached
        model = onnx.load(str(self.context.registry.model_onnx_path(record.id)))
        found = (graph_node_names(model), head_node_sets(model, [p.tensor for p in record.split_points]))
        with self._lock:
            self._graphs[record.sha256] = found
        return found

    def deployed_split(self, model_id: str) -> str:
        """A split of the model that both robot and edge hold (the robot's most recent one)."""
        peers = self.context.peers
        edge = {d.get("split_id") for d in peers.deployed("edge") if d.get("model_id") == model_id}
        robot = [d.get("split_id") for d in peers.deployed("robot") if d.get("model_id") == model_id]
        both = [split_id for split_id in robot if split_id in edge and isinstance(split_id, str)]
        if not both:
            raise Conflict(
                f"no split of model {model_id} is deployed on both robot and edge, so neither can profile it: deploy "
                f"any split of it first (POST /api/models/{model_id}/splits, then POST /api/splits/<id>/deploy)"
            )
        return both[-1]

    def link(self, params: PlanParams) -> LinkInfo:
        bandwidth, rtt = params.bandwidth_mbps, params.rtt_ms
        probe = self.context.peers.probe_link() if bandwidth is None or rtt is None else None
        return LinkInfo(
            bandwidth_mbps=bandwidth if bandwidth is not None else _measured(probe).throughput_mbps,
            rtt_ms=rtt if rtt is not None else _measured(probe).rtt_ms,
            bandwidth_source="given" if bandwidth is not None else "measured",
            rtt_source="given" if rtt is not None else "measured",
            probe=probe,
        )

    def inputs(
        self, model_id: str, params: PlanParams
    ) -> tuple[ModelRecord, str, PlannerInputs, ProfileResult, ProfileResult, list[str]]:
        registry = self.context.registry
        record = registry.get_model(model_id)
        split_id = self.deployed_split(model_id)
        image = SAMPLE_IMAGE.read_bytes()
        robot = self.context.peers.profile("robot", split_id, image)
        edge = self.context.peers.profile("edge", split_id, image)
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
            floor=Floor.of(params.min_top1, params.min_cosine),
            response_bytes=DEFAULT_RESPONSE_BYTES,
            robot_scale=params.robot_scale,
            edge_scale=params.edge_scale,
        )
        return record, split_id, inputs, robot, edge, notes

    # --- the three operations -------------------------------------------------------------------------------------

    def plan(self, model_id: str, params: PlanParams) -> PlanResponse:
        record, split_id, inputs, robot, edge, notes = self.inputs(model_id, params)
        link = self.link(params)
        ranked, pick = plan(inputs, link.bandwidth_mbps, link.rtt_ms)
        return PlanResponse(
            model_id=record.id,
            model_name=record.name,
            profiled_split_id=split_id,
            link=link,
            image_bytes=inputs.image_bytes,
            response_bytes=inputs.response_bytes,
            floor=FloorInfo(min_top1=inputs.floor.min_top1, min_cosine=inputs.floor.min_cosine),
            calibrated=inputs.fidelity is not None,
            notes=notes,
            robot=ProfileSummary.of(robot),
            edge=ProfileSummary.of(edge),
            pick=pick,
            plans=ranked,
        )

    def deploy(self, model_id: str, params: PlanParams) -> PlanDeployment:
        """Plan, then create and deploy the pick (all-robot / all-edge: make the profiled split the active one)."""
        planned = self.plan(model_id, params)
        pick = planned.pick
        created = False
        if pick.mode == "split":
            assert pick.tensor is not None and pick.bits is not None
            fields: dict[str, Any] = {"split_point": pick.tensor, "bits": pick.bits}
            if planned.calibrated and pick.bits <= 8:
                fields["clip"] = "calibrated"
            manifest = create_split(self.context.registry, model_id, SplitRequest.model_validate(fields))
            split_id = manifest.id
            created = True
        else:
            split_id = planned.profiled_split_id
        deployed = self.context.peers.deploy(split_id)
        return PlanDeployment(
            **planned.model_dump(), mode=pick.mode, split_id=split_id, created_split=created, deployed=deployed
        )

    def curve(self, model_id: str, params: PlanParams, bandwidths: Sequence[float], top: int) -> PlanCurveResponse:
        _, _, inputs, _, _, notes = self.inputs(model_id, params)
        rtt_source: Literal["given", "measured"] = "given"
        rtt = params.rtt_ms
        if rtt is None:
            rtt = self.context.peers.probe_link().rtt_ms
            rtt_source = "measured"
        found = curve(inputs, bandwidths, rtt, top)
        return PlanCurveResponse(
            **found.model_dump(),
            model_id=model_id,
            rtt_source=rtt_source,
            calibrated=inputs.fidelity is not None,
            notes=notes,
        )


def _measured(probe: LinkProbeResult | None) -> LinkProbeResult:
    assert probe is not None  # link() probes whenever a value is missing
    return probe
