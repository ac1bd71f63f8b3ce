"""Cuts of two tensors: found only where needed, valid by brute force, and carried end to end by robot and edge."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.affine import affine_params
from common.imaging import decode_image, preprocess
from common.tensor_records import encode_features
from common.wire import decode_frame, encode_frame
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.graph.cuts import data_flow, find_pair_cuts
from model_splitter.graph.cutting import cut_model
from model_splitter.graph.verification import head_tail_max_abs_diff
from model_splitter.quantize.fidelity import roundtrip
from model_splitter.records import ModelRecord, SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry
from tests.model_splitter.graphs import windowed_skip
from tests.support import CLASSIFIER, SAMPLES, running_pair, tiny_classifier
from tools.local_stack import ServiceProcess


def two_branch(num_classes: int = 10, size: int = 32) -> onnx.ModelProto:
    """Two branches from the input, merged only by the final Add: not a single tensor cuts this graph."""
    rng = np.random.default_rng(3)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["input", "wa1", "ba1"], ["a1"], name="/left/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["a2"], name="/left/relu1/Relu"),
        helper.make_node("Conv", ["a2", "wa2", "ba2"], ["a3"], name="/left/conv2/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a3"], ["a4"], name="/left/relu2/Relu"),
        helper.make_node("GlobalAveragePool", ["a4"], ["a5"], name="/left/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["a5"], ["a6"], name="/left/Flatten"),
        helper.make_node("Gemm", ["a6", "wa3", "ba3"], ["la"], name="/left/fc/Gemm", transB=1),
        helper.make_node("Conv", ["input", "wb1", "bb1"], ["b1"], name="/right/conv1/Conv", pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["b1"], ["b2"], name="/right/relu1/Relu"),
        helper.make_node("GlobalAveragePool", ["b2"], ["b3"], name="/right/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["b3"], ["b4"], name="/right/Flatten"),
        helper.make_node("Gemm", ["b4", "wb2", "bb2"], ["lb"], name="/right/fc/Gemm", transB=1),
        helper.make_node("Add", ["la", "lb"], ["output"], name="/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_branch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", num_classes])],
        [
            weight("wa1", 8, 3, 3, 3),
            weight("ba1", 8),
            weight("wa2", 8, 8, 3, 3),
            weight("ba2", 8),
            weight("wa3", num_classes, 8),
            weight("ba3", num_classes),
            weight("wb1", 4, 3, 5, 5),
            weight("bb1", 4),
            weight("wb2", num_classes, 4),
            weight("bb2", num_classes),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def residual_block() -> onnx.ModelProto:
    """x -> Conv -> Relu -> Conv -> Add(x) -> Relu -> Conv: a short stretch around the residual Add."""
    rng = np.random.default_rng(4)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["x"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["x", "c2"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["y"]),
        helper.make_node("Conv", ["y", "w3"], ["output"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [weight(f"w{i}", 4, 4, 3, 3) for i in range(4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def separates(model: onnx.ModelProto, removed: set[str]) -> bool:
    """Brute force: with ``removed`` taken out, no graph output is reachable from the graph input."""
    reached = {value.name for value in model.graph.input} - removed
    for node in model.graph.node:  # these graphs are written in topological order
        if any(name in reached for name in node.input):
            reached |= {name for name in node.output if name not in removed}
    return not any(value.name in reached for value in model.graph.output)


def test_two_branches_have_no_single_cut_but_pair_cuts() -> None:
    model = two_branch()
    assert data_flow(model).cuts == []
    pairs = find_pair_cuts(model)
    assert pairs[:2] == [("a1", "b1"), ("a2", "b2")]  # the branches paired at equal depth
    tensors = [name for node in model.graph.node for name in node.output if name != "output"]
    for a, b in pairs:
        assert separates(model, {a, b}) and not separates(model, {a}) and not separates(model, {b})
        _, tail = cut_model(model, [a, b])
        assert [value.name for value in tail.graph.input] == [a, b]
    # Every pair it offers is one of the brute-force pairs; it keeps one partner per tensor, not all of them.
    brute = {(a, b) for a, b in itertools.combinations(tensors, 2) if separates(model, {a, b})}
    assert set(pairs) <= brute and len(pairs) < len(brute)


def test_pairs_only_in_long_stretches() -> None:
    assert find_pair_cuts(tiny_classifier()) == []  # every tensor is a single cut
    block = residual_block()
    assert find_pair_cuts(block) == []  # a residual block is far shorter than a long stretch
    # Allowed in short stretches too, the block gives (block input, tensor of the branch) pairs.
    short = find_pair_cuts(block, min_stretch=1)
    assert short and all(a == "x" for a, _ in short)
    for a, b in short:
        _, tail = cut_model(block, [a, b])
        assert {value.name for value in tail.graph.input} == {a, b}
    assert len(find_pair_cuts(two_branch(), limit=3)) == 3


def test_analysis_offers_pairs_with_summed_costs() -> None:
    points = analyse_split_points(two_branch(), (1, 3, 32, 32), pair_cuts=True)
    assert analyse_split_points(two_branch(), (1, 3, 32, 32)) == []
    assert [p.index for p in points] == list(range(len(points)))
    first = points[0]
    assert first.label == "left.conv1 + right.conv1" and first.tensor == "a1 + b1"
    assert first.tensors == ["a1", "b1"] and first.shapes == [[1, 8, 32, 32], [1, 4, 32, 32]]
    assert first.shape == [1, 8, 32, 32] and first.elements == 12 * 32 * 32
    assert first.wire_bytes[4] == (8 + 4) * 32 * 32 // 2
    shares = [p.head_flops_share for p in points]
    assert all(0 < share <= 1 for share in shares) and shares == sorted(shares)


# --------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pair_splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, ModelRecord, dict[int, str]]:
    registry = Registry(tmp_path_factory.mktemp("pairs") / "registry")
    model = two_branch().SerializeToString()
    record = register_upload(registry, model, "two.onnx", (1, 3, 32, 32), "two", False, CLASSIFIER)
    pair = record.split_points[1]
    assert pair.tensors == ["a2", "b2"]
    splits = {}
    for bits in (32, 4):
        manifest = create_split(registry, record.id, SplitRequest(split_point=pair.label, bits=bits))
        assert [spec.name for spec in manifest.cut] == ["a2", "b2"]
        assert [r.name for r in manifest.quantization.ranges] == ["a2", "b2"]
        splits[bits] = manifest.id
    return registry, record, splits


@pytest.fixture(scope="module")
def robot_and_edge(
    tmp_path_factory: pytest.TempPathFactory, pair_splits: tuple[Registry, ModelRecord, dict[int, str]]
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    registry, _, splits = pair_splits
    root = tmp_path_factory.mktemp("pair-services")
    with running_pair(root) as (robot, edge):
        for split_id in splits.values():
            for service in (edge, robot):
                files = {"bundle": ("b.zip", bundle_zip(registry, split_id))}
                assert httpx.post(f"{service.url}/api/bundles", files=files, timeout=60).status_code == 200
        yield robot, edge


def _infer(robot: ServiceProcess, split_id: str, mode: str) -> dict[str, object]:
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    data = {"mode": mode, "split_id": split_id}
    response = httpx.post(f"{robot.url}/api/infer", files={"image": ("c.jpg", image)}, data=data, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_pair_split_end_to_end(
    pair_splits: tuple[Registry, ModelRecord, dict[int, str]], robot_and_edge: tuple[ServiceProcess, ServiceProcess]
) -> None:
    registry, record, splits = pair_splits
    robot, edge = robot_and_edge
    # 32 bits: the robot sends both tensors as float32, and the edge answers what the whole model answers.
    split = _infer(robot, splits[32], "split")
    whole = _infer(robot, splits[32], "all-robot")
    pairs = zip(split["predictions"], whole["predictions"], strict=True)  # type: ignore[call-overload]
    assert all(p["index"] == q["index"] and p["probability"] == pytest.approx(q["probability"]) for p, q in pairs)

    # 4 bits: the answer is the tail's on the two dequantized tensors, computed here independently.
    manifest = registry.get_split(splits[4])
    model = onnx.load(str(registry.model_onnx_path(record.id)))
    batch = preprocess(decode_image((SAMPLES / "chelsea.jpg").read_bytes()), record.preprocessing)
    head, tail = cut_model(model, ["a2", "b2"])
    a2, b2 = ort.InferenceSession(head.SerializeToString()).run(None, {"input": batch})
    ranges = {r.name: r for r in manifest.quantization.ranges}
    scheme = manifest.quantization.scheme
    feeds = {"a2": roundtrip(a2, 4, ranges["a2"], scheme), "b2": roundtrip(b2, 4, ranges["b2"], scheme)}
    logits = ort.InferenceSession(tail.SerializeToString()).run(None, feeds)[0][0]
    quantized = _infer(robot, splits[4], "split")
    assert [p["index"] for p in quantized["predictions"]] == list(np.argsort(-logits)[:5])  # type: ignore[attr-defined]
    sent = quantized["bytes"]["sent"]  # type: ignore[index]
    assert 0 < sent < (8 + 4) * 32 * 32 // 2 + 200  # each tensor's codes packed, or coded where that is shorter

    # The frame itself holds two tensors, each with the scale and zero point of its own range.
    records = encode_features(manifest, [a2, b2])
    frame = encode_frame(splits[4], records)
    assert [(t.name, t.lo, t.hi) for t in decode_frame(frame).tensors] == [
        (name, *affine_params(ranges[name].lo, ranges[name].hi, 4)) for name in ("a2", "b2")
    ]
    response = httpx.post(
        f"{edge.url}/api/infer", content=frame, headers={"content-type": "application/octet-stream"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == quantized["predictions"]
    single = encode_frame(splits[4], records[:1])
    refused = httpx.post(
        f"{edge.url}/api/infer", content=single, headers={"content-type": "application/octet-stream"}, timeout=30
    )
    assert refused.status_code == 422 and "cuts 2 tensor(s), the frame carries 1" in refused.json()["detail"]


def test_a_pair_carries_the_batch_first_in_both_tensors() -> None:
    """A window attention's ``[64 x batch, 49, 96]`` in a pair reached the edge as a frame of 64 images (413):
    only tensors with the batch on axis 0 pair up."""
    model = windowed_skip()
    assert ("p", "w1") in find_pair_cuts(model)  # taken as a graph, the block's tensors pair with the skip
    pairs = [point for point in analyse_split_points(model, (1, 4), pair_cuts=True) if len(point.tensors) == 2]
    assert [sorted(point.tensors) for point in pairs] == [["a", "p"]]
    assert pairs[0].shapes == [[1, 4], [1, 4]]
    head, tail = cut_model(model, pairs[0].tensors)
    assert head_tail_max_abs_diff(model, head, tail, (1, 4), batch=3) == 0.0
