"""PlanService in this process: a real registry, and a real robot and edge (uvicorn processes) holding the split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import Conflict
from model_splitter.records import SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.peers import Peers
from model_splitter.services.plans import PlanParams, PlanService
from model_splitter.services.splits import create_split
from model_splitter.settings import SplitterSettings
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry
from tests.support import running_service, tiny_classifier, upload_bundle


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PlanService, str, str]]:
    root = tmp_path_factory.mktemp("plan-service")
    registry = Registry(root / "registry")
    record = register_upload(registry, tiny_classifier().SerializeToString(), "tiny.onnx", (1, 3, 32, 32), "t", False)
    manifest = create_split(registry, record.id, SplitRequest(split_point="block", bits=8))
    undeployed = register_upload(
        registry, tiny_classifier(seed=5).SerializeToString(), "other.onnx", (1, 3, 32, 32), "o", False
    )
    with (
        running_service("edge_inference", "EDGE", root / "edge", intra_op_threads="1") as edge,
        running_service("robot_inference", "ROBOT", root / "robot", edge_url=edge.url, intra_op_threads="1") as robot,
    ):
        zipped = bundle_zip(registry, manifest.id)
        upload_bundle(edge, zipped)
        upload_bundle(robot, zipped)
        peers = Peers(robot.url, edge.url, 60.0, SplitterSettings())
        yield PlanService(registry, peers), manifest.id, undeployed.id
        peers.close()


def test_the_split_both_sides_hold_is_the_one_profiled(service: tuple[PlanService, str, str]) -> None:
    plans, split_id, undeployed = service
    model_id = plans.registry.list_splits()[0].model_id
    assert plans.deployed_split(model_id) == split_id
    with pytest.raises(Conflict, match="deployed on both robot and edge"):
        plans.deployed_split(undeployed)


def test_gathered_inputs_cover_every_split_point(service: tuple[PlanService, str, str]) -> None:
    plans, split_id, _ = service
    model_id = plans.registry.get_split(split_id).model_id
    gathered = plans.inputs(model_id, PlanParams(bandwidth_mbps=10.0, rtt_ms=1.0))
    assert gathered.record.id == model_id and gathered.split_id == split_id
    assert [c.label for c in gathered.planner.candidates] == [p.label for p in gathered.record.split_points]
    assert gathered.robot.total_ms > 0 and gathered.edge.total_ms > 0
    assert gathered.planner.fidelity is None
    assert any("no calibration" in note for note in gathered.notes)


def test_a_plan_with_a_given_link_ranks_every_plan_and_picks_the_fastest_eligible(
    service: tuple[PlanService, str, str],
) -> None:
    plans, split_id, _ = service
    model_id = plans.registry.get_split(split_id).model_id
    answer = plans.plan(model_id, PlanParams(bandwidth_mbps=10.0, rtt_ms=2.0))
    assert (answer.link.bandwidth_source, answer.link.rtt_source) == ("given", "given")
    assert answer.link.probe is None
    eligible = [plan for plan in answer.plans if plan.eligible]
    assert answer.pick.key == min(eligible, key=lambda plan: plan.total_ms).key
    assert {"all-robot", "all-edge"} <= {plan.mode for plan in answer.plans}


def test_the_curve_names_a_winner_per_bandwidth(service: tuple[PlanService, str, str]) -> None:
    plans, split_id, _ = service
    model_id = plans.registry.get_split(split_id).model_id
    found = plans.curve(model_id, PlanParams(rtt_ms=1.0), [1.0, 10.0, 100.0], top=3)
    assert found.bandwidths_mbps == [1.0, 10.0, 100.0] and len(found.winners) == 3
    assert found.rtt_source == "given"
    keys = {series.key for series in found.series}
    assert set(found.winners) <= keys


def test_a_measured_link_comes_from_the_robots_probe(service: tuple[PlanService, str, str], tmp_path: Path) -> None:
    plans, _, _ = service
    link = plans.link(PlanParams(bandwidth_mbps=None, rtt_ms=None))
    assert (link.bandwidth_source, link.rtt_source) == ("measured", "measured")
    assert link.probe is not None and link.bandwidth_mbps > 0 and link.rtt_ms > 0
