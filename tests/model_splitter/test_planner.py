"""The planner's arithmetic on synthetic profiles: breakdown, ranking, the fidelity floor, the winner by bandwidth."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from common.wire import frame_overhead
from model_splitter.planning.curve import curve
from model_splitter.planning.planner import (
    Candidate,
    Floor,
    PlanEstimate,
    PlannerInputs,
    SideProfile,
    as_fraction,
    estimate_plans,
    graph_node_names,
    head_node_sets,
    plan,
    rank_plans,
    transfer_ms,
)
from tests.support import tiny_classifier

NODES = [f"n{i}" for i in range(10)]
GRAPH = frozenset(NODES)


@dataclass(frozen=True)
class Fid:
    top1_agreement: float
    cosine: float
    sqnr_db: float = 30.0
    task_name: str | None = None  # a classifier's: its answer is its top-1
    coded_bytes: int | None = None  # no coding measured: the packed size counts

    @property
    def answer_agreement(self) -> float:
        return self.top1_agreement


def candidate(label: str, head: int, elements: int) -> Candidate:
    return Candidate(
        label=label,
        tensor=f"t_{label}",
        shape=[1, elements],
        elements=elements,
        wire_bytes={bits: -(-elements * bits // 8) for bits in (2, 4, 8, 16, 32)},
        head_flops_share=head / 10,
        head_nodes=frozenset(NODES[:head]),
    )


CANDIDATES = [candidate("early", 1, 800_000), candidate("middle", 2, 20_000), candidate("late", 9, 5_000)]
# A slow robot (10 ms per node) and a fast edge (1 ms per node), with fixed per-request stages.
ROBOT = SideProfile(
    provider="CPUExecutionProvider",
    total_ms=100.0,
    nodes={name: 10.0 for name in NODES},
    stages_ms={"decode": 2.0, "preprocess": 3.0, "postprocess": 0.5},
    encode_ns_per_element={bits: 1.0 for bits in (2, 4, 8, 16, 32)},
    decode_ns_per_element={bits: 1.0 for bits in (2, 4, 8, 16, 32)},
)
EDGE = SideProfile(
    provider="CUDAExecutionProvider",
    total_ms=10.0,
    nodes={name: 1.0 for name in NODES},
    stages_ms={"decode": 1.0, "preprocess": 2.0, "postprocess": 0.25},
    encode_ns_per_element={bits: 0.5 for bits in (2, 4, 8, 16, 32)},
    decode_ns_per_element={bits: 0.5 for bits in (2, 4, 8, 16, 32)},
)
ALL_PASS = {(c.label, bits): Fid(1.0, 1.0) for c in CANDIDATES for bits in (2, 4, 8, 16)}


def inputs(**changes: object) -> PlannerInputs:
    base: dict[str, object] = {
        "candidates": CANDIDATES,
        "graph_nodes": GRAPH,
        "robot": ROBOT,
        "edge": EDGE,
        "image_bytes": 35_000,
        "fidelity": ALL_PASS,
        "response_bytes": 1000,
    }
    base.update(changes)
    return PlannerInputs(**base)  # type: ignore[arg-type]


def by_key(plans: list[PlanEstimate]) -> dict[str, PlanEstimate]:
    return {p.key: p for p in plans}


def test_breakdown_of_each_kind_of_plan() -> None:
    plans = by_key(estimate_plans(inputs(), bandwidth_mbps=8.0, rtt_ms=4.0))  # 8 Mbit/s: 1 byte = 1 us
    assert len(plans) == 2 + 3 * 5

    robot = plans["all-robot"]
    assert (robot.robot_ms, robot.transfer_ms, robot.rtt_ms, robot.edge_ms) == (105.5, 0.0, 0.0, 0.0)
    assert robot.bytes == 0 and robot.total_ms == 105.5

    edge = plans["all-edge"]
    sent = 35_000 + frame_overhead([("image", 1)])
    assert edge.bytes == sent
    assert edge.robot_ms == 0.0
    assert edge.transfer_ms == pytest.approx((sent + 1000) / 1000)
    assert edge.edge_ms == pytest.approx(1.0 + 2.0 + 10.0 + 0.25)
    assert edge.total_ms == pytest.approx(edge.transfer_ms + 4.0 + edge.edge_ms, abs=1e-3)

    middle = plans["middle@4b"]
    sent = 10_000 + frame_overhead([("t_middle", 2)])
    assert middle.bytes == sent
    assert middle.head_share == pytest.approx(0.2)
    assert middle.share_source == "profile"
    # robot: decode + preprocess + 2 of 10 nodes of 100 ms + 1 ns x 20000 elements
    assert middle.robot_ms == pytest.approx(5.0 + 20.0 + 0.02)
    # edge: 0.5 ns x 20000 elements + 8 of 10 nodes of 10 ms + postprocess
    assert middle.edge_ms == pytest.approx(0.01 + 8.0 + 0.25)
    assert middle.transfer_ms == pytest.approx((sent + 1000) / 1000)
    assert middle.total_ms == pytest.approx(
        middle.robot_ms + middle.transfer_ms + 4.0 + middle.edge_ms,
        abs=1e-3,
    )


def test_ranking_is_by_total_and_the_pick_is_first() -> None:
    ranked, pick = plan(inputs(), bandwidth_mbps=8.0, rtt_ms=4.0)
    eligible = [p for p in ranked if p.eligible]
    assert [p.rank for p in eligible] == list(range(1, len(eligible) + 1))
    totals = [p.total_ms for p in eligible]
    assert totals == sorted(totals)
    assert pick is ranked[0] and pick.rank == 1
    assert pick.total_ms == min(p.total_ms for p in estimate_plans(inputs(), 8.0, 4.0))


def test_winner_changes_with_bandwidth() -> None:
    assert plan(inputs(), bandwidth_mbps=0.1, rtt_ms=2.0)[1].key == "all-robot"
    middle = plan(inputs(), bandwidth_mbps=2.0, rtt_ms=2.0)[1]
    assert middle.mode == "split" and middle.split_point == "middle" and middle.bits == 2
    assert plan(inputs(), bandwidth_mbps=1000.0, rtt_ms=2.0)[1].key == "all-edge"

    found = curve(inputs(), [0.1, 2.0, 1000.0], rtt_ms=2.0, top=2)
    assert found.winners == ["all-robot", "middle@2b", "all-edge"]
    keys = [s.key for s in found.series]
    assert keys[:3] == found.winners  # every winner is drawn, even beyond top
    assert all(len(s.total_ms) == 3 for s in found.series)


def test_fidelity_floor_discards_plans_below_it() -> None:
    fidelity = dict(ALL_PASS)
    fidelity[("middle", 2)] = Fid(top1_agreement=0.95, cosine=0.999)
    fidelity[("middle", 4)] = Fid(top1_agreement=99.5, cosine=0.98)  # a percentage is read as one
    plans = by_key(estimate_plans(inputs(fidelity=fidelity), 2.0, 2.0))
    assert not plans["middle@2b"].eligible and "top-1 agreement 95.0% < 99.0%" in plans["middle@2b"].reason
    assert not plans["middle@4b"].eligible and "cosine" in plans["middle@4b"].reason
    assert plans["middle@4b"].fidelity.top1_agreement == pytest.approx(0.995)
    assert plans["middle@8b"].eligible

    ranked, pick = plan(inputs(fidelity=fidelity), 2.0, 2.0)
    assert pick.key != "middle@2b"
    assert all(p.rank is None for p in ranked if not p.eligible)
    assert ranked.index(next(p for p in ranked if not p.eligible)) == sum(p.eligible for p in ranked)

    relaxed = by_key(estimate_plans(inputs(fidelity=fidelity, floor=Floor.of(90, 0.95)), 2.0, 2.0))
    assert relaxed["middle@2b"].eligible and relaxed["middle@4b"].eligible


def test_without_calibration_only_float_splits_and_the_baselines_pass() -> None:
    plans = estimate_plans(inputs(fidelity=None), 2.0, 2.0)
    for p in plans:
        expected = p.mode != "split" or (p.bits or 0) >= 16
        assert p.eligible is expected, p.key
        if not expected:
            assert "not calibrated" in p.reason
    assert all(p.eligible for p in estimate_plans(inputs(fidelity=None, floor=Floor(0.0, -1.0)), 2.0, 2.0))


def test_profile_without_graph_names_falls_back_to_flops_share() -> None:
    opaque = SideProfile(provider="TensorrtExecutionProvider", total_ms=100.0, nodes={"TRTKernel_graph_0": 100.0})
    plans = by_key(estimate_plans(inputs(robot=opaque), 2.0, 2.0))
    assert plans["late@32b"].share_source == "flops"
    assert plans["late@32b"].head_share == pytest.approx(0.9)


def test_scales_are_what_if_factors_on_compute() -> None:
    base = by_key(estimate_plans(inputs(), 2.0, 2.0))
    slow = by_key(estimate_plans(inputs(robot_scale=2.0, edge_scale=0.5), 2.0, 2.0))
    assert slow["all-robot"].robot_ms == pytest.approx(2 * base["all-robot"].robot_ms)
    assert slow["all-edge"].edge_ms == pytest.approx(0.5 * base["all-edge"].edge_ms, abs=1e-3)
    assert slow["middle@4b"].transfer_ms == base["middle@4b"].transfer_ms


def test_ties_go_to_fewer_bytes() -> None:
    ranked = rank_plans(estimate_plans(inputs(robot=SideProfile("cpu", 0.0), edge=SideProfile("cpu", 0.0)), 1e9, 0))
    zero = [p for p in ranked if p.total_ms == 0.0]
    assert zero and zero[0].key == "all-robot"


def test_head_node_sets_are_the_ancestors_of_the_cut() -> None:
    model = tiny_classifier()
    heads = head_node_sets(model, ["r1", "r2", "flat"])
    assert heads["r1"] == {"/stem/conv/Conv", "/stem/relu/Relu"}
    assert heads["r2"] == heads["r1"] | {"/block/conv/Conv", "/block/relu/Relu"}
    assert heads["flat"] == graph_node_names(model) - {"/fc/Gemm"}


def test_units() -> None:
    assert transfer_ms(1_000_000, 8.0) == pytest.approx(1000.0)
    assert as_fraction(99) == pytest.approx(0.99) and as_fraction(0.99) == 0.99
    with pytest.raises(ValueError):
        transfer_ms(1, 0)


def test_the_default_floor_follows_the_task() -> None:
    assert Floor.of(None, None) == Floor(0.99, 0.99)
    # A detector's score maps can drift in cosine while every box stays: its floor is on the boxes.
    assert Floor.of(None, None, "detection") == Floor(0.95, -1.0)
    assert Floor.of(90, None, "segmentation") == Floor(0.9, -1.0)
    assert Floor.of(None, 0.5, "raw") == Floor(0.99, 0.5)
