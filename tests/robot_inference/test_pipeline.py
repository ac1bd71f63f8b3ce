"""RobotPipeline in this process: a real DeploymentSet of the tiny split's robot half, and a real edge process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from common.bundles import BundleStore, read_bundle_zip
from common.deployments import DeploymentSet
from common.errors import InvalidArgument, InvalidImage, UnknownSplit, UpstreamUnavailable
from common.imaging import decode_image, preprocess
from common.sessions import SessionOptions
from robot_inference.edge_fleet import EdgeFleet
from robot_inference.pipeline import RobotPipeline, parse_mode
from tests.support import CHELSEA, TinySplit, running_service, upload_bundle
from tools.local_stack import ServiceProcess, free_port

CPU = SessionOptions(providers=("cpu",), allow_spinning=False)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[ServiceProcess]:
    with running_service("edge_inference", "EDGE", tmp_path_factory.mktemp("edge")) as service:
        upload_bundle(service, tiny_split.zip_bytes)
        yield service


def robot_deployments(root: Path, split: TinySplit) -> DeploymentSet:
    deployments = DeploymentSet(BundleStore(root, "head"), CPU)
    deployments.install(read_bundle_zip(split.zip_bytes, "head"))
    return deployments


def pipeline(root: Path, split: TinySplit, edge_url: str, fallback: bool = False) -> RobotPipeline:
    return RobotPipeline(robot_deployments(root, split), EdgeFleet([edge_url], 5.0), fallback_to_robot=fallback)


def test_the_three_plans_agree_and_account_for_their_bytes(
    tmp_path: Path, tiny_split: TinySplit, edge: ServiceProcess
) -> None:
    robot = pipeline(tmp_path, tiny_split, edge.url)
    results = {mode: robot.infer(CHELSEA, mode) for mode in ("split", "all-robot", "all-edge")}
    top = {mode: result.predictions[0].index for mode, result in results.items()}
    assert len(set(top.values())) == 1, top
    split = results["split"]
    cut = tiny_split.manifest.cut[0]
    # 4-bit codes of the cut tensor plus the frame header and CRC
    assert 60 < split.bytes.sent < cut.elements // 2 + 1024  # 4-bit codes, coded when that is shorter
    assert split.bytes.feature_fp32 == cut.elements * 4
    assert results["all-edge"].bytes.sent > len(CHELSEA)  # the encoded image, framed
    assert results["all-robot"].bytes.sent == 0 and results["all-robot"].providers.edge is None
    stages = {(stage.where, stage.name) for stage in split.stages}
    assert {("robot", "head"), ("robot", "quantize"), ("link", "network")} <= stages
    assert any(where == "edge" for where, _ in stages)
    assert split.total_ms == pytest.approx(sum(stage.ms for stage in split.stages), abs=1e-2)


def test_all_robot_matches_the_full_model_run_here(tmp_path: Path, tiny_split: TinySplit) -> None:
    deployments = robot_deployments(tmp_path, tiny_split)
    deployment = deployments.get(None)
    assert deployment.full is not None
    manifest = deployment.manifest
    batch = preprocess(decode_image(CHELSEA, manifest.preprocessing.color), manifest.preprocessing)
    logits = np.asarray(deployment.full.run({deployment.full.input_names[0]: batch})[0])[0]
    result = RobotPipeline(deployments, EdgeFleet([f"http://127.0.0.1:{free_port()}"], 1.0)).infer(CHELSEA, "all-robot")
    assert result.predictions[0].index == int(np.argmax(logits))


def test_a_dead_edge_is_unavailable_or_answered_on_the_robot(tmp_path: Path, tiny_split: TinySplit) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
        pipeline(tmp_path / "strict", tiny_split, dead).infer(CHELSEA, "split")
    result = pipeline(tmp_path / "fallback", tiny_split, dead, fallback=True).infer(CHELSEA, "split")
    assert result.mode == "all-robot"
    assert result.fallback_reason is not None and result.fallback_reason.startswith("split failed")


def test_bad_requests_are_refused_before_any_work(tmp_path: Path, tiny_split: TinySplit, edge: ServiceProcess) -> None:
    robot = pipeline(tmp_path, tiny_split, edge.url)
    with pytest.raises(InvalidImage, match="empty"):
        robot.infer(b"", "all-edge")
    with pytest.raises(InvalidImage):
        robot.infer(b"not an image", "split")
    with pytest.raises(UnknownSplit):
        robot.infer(CHELSEA, "split", split_id="f" * 64)
    assert parse_mode(None) == "split" and parse_mode("all-edge") == "all-edge"
    with pytest.raises(InvalidArgument, match="mode must be one of"):
        parse_mode("everywhere")
