"""Model intake: every accepted format becomes a working ONNX model; every unsafe or broken upload is refused.

All fixtures are built here: tiny modules, TorchScript and torch.export archives, pickles (benign and hostile),
hand-built ONNX graphs and one resnet18 state_dict.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from common.errors import BadRequest, InvalidArgument, UnprocessableModel, UnsafeModelFormat
from model_splitter.intake.formats import (
    IntakeResult,
    detect_format,
    intake_torchvision,
    intake_upload,
    parse_input_shape,
)
from model_splitter.intake.imagenet_labels import imagenet_labels, labels_for
from model_splitter.intake.torchvision_models import FAMILIES, architectures, build
from tests.crafted import (
    Marker,
    add_member,
    jit_bytes,
    pt2_bytes,
    rewrite_zip,
    tiny,
    torch_save_bytes,
    with_duplicate,
    with_inflating_member,
)

SHAPE = (1, 3, 16, 16)


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def assert_matches_torch(result: IntakeResult, reference: Callable[[torch.Tensor], Any], batch: int = 3) -> None:
    """Opset >= 17, a working dynamic batch axis, and outputs equal to torch's at that batch size."""
    assert default_opset(result.model) >= 17
    assert result.export_max_abs_diff is not None and result.export_max_abs_diff <= 1e-4
    x = np.random.default_rng(1).standard_normal((batch, *result.input_shape[1:]), dtype=np.float32)
    actual = run_onnx(result.model, x)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert actual.shape == expected.shape and actual.shape[0] == batch
    assert float(np.max(np.abs(actual - expected))) <= 1e-4


# ----------------------------------------------------------------------------------------------- input shapes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, (1, 3, 224, 224)),
        ("", (1, 3, 224, 224)),
        ("1,3,224,224", (1, 3, 224, 224)),
        ("1x3x299x299", (1, 3, 299, 299)),
        (" [2, 3, 64, 64] ", (2, 3, 64, 64)),
        ("8,4", (8, 4)),
    ],
)
def test_parse_input_shape_accepts(text: str | None, expected: tuple[int, ...]) -> None:
    assert parse_input_shape(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1,3,a,224", "list of integers"),
        ("1,3,-2,224", "list of integers"),
        ("1.5,3", "list of integers"),
        ("224", "2 to 6"),
        ("1,1,1,1,1,1,1", "2 to 6"),
        ("1,3,0,224", "between 1 and 4096"),
        ("1,3,9000,224", "between 1 and 4096"),
        ("64,3,4096,4096", "elements"),
        ("1,3,\uff12\uff12\uff14,224", "list of integers"),  # full-width digits pass str.isdigit
    ],
)
def test_parse_input_shape_refuses(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_input_shape(text)


# -------------------------------------------------------------------------------------------------- detection


def test_detect_format_by_content_not_name() -> None:
    scripted = jit_bytes(torch.jit.script(tiny()))
    assert detect_format(scripted, "model.onnx") == "torchscript"
    assert detect_format(torch_save_bytes(tiny()), "model.pt") == "pickle"
    assert detect_format(pickle.dumps({"a": 1}), None) == "pickle"
    assert detect_format(onnx_linear().SerializeToString(), "model.bin") == "onnx"
    assert detect_format(b"\x00\x01garbage" * 20, "model.pt") == "unknown"
    assert detect_format(b"not a model", "model.onnx") == "onnx"  # named .onnx: say why it is not ONNX


# ------------------------------------------------------------------------------------------------ TorchScript


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_is_exported_and_matches_torch(how: str) -> None:
    net = tiny()
    module = torch.jit.script(net) if how == "script" else torch.jit.trace(net, torch.randn(*SHAPE))
    result = intake_upload(jit_bytes(module), "net.pt", SHAPE)
    assert (result.source_format, result.architecture, result.input_shape) == ("torchscript", None, SHAPE)
    assert result.weights_trained and result.num_classes == 5
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch axis is symbolic
    assert_matches_torch(result, net)


class FileWriter(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.path)  # compiles to aten::save, which TorchScript runs without any pickle involved
        return x


def test_torchscript_that_writes_files_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "written.pt"
    archive = jit_bytes(torch.jit.script(FileWriter(str(marker))))
    with pytest.raises(UnsafeModelFormat, match="reads or writes files"):
        intake_upload(archive, "writer.pt", SHAPE)
    assert not marker.exists()


class Profiled(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.ops.profiler._record_function_enter_new("side effect", None)  # not a tensor computation
        return x


def test_torchscript_with_operators_outside_tensor_namespaces_is_refused() -> None:
    with pytest.raises(UnsafeModelFormat, match="profiler::_record_function_enter_new"):
        intake_upload(jit_bytes(torch.jit.script(Profiled())), "profiled.pt", SHAPE)


# ----------------------------------------------------------------------------------------------- torch.export


@pytest.fixture(scope="module")
def pt2() -> bytes:
    return pt2_bytes()


def test_torch_export_archive_layout_is_what_detection_expects(pt2: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(pt2)) as zf:
        members = {name.split("/", 1)[1] for name in zf.namelist()}
        assert zf.read(next(n for n in zf.namelist() if n.endswith("/archive_format"))) == b"pt2"
    assert {"archive_format", "models/model.json", "data/sample_inputs/model.pt"} <= members
    assert detect_format(pt2, None) == "torch.export"


def test_torch_export_is_exported_and_matches_torch(pt2: bytes) -> None:
    result = intake_upload(pt2, "net.pt2", (1, 3, 16, 16))
    assert (result.source_format, result.input_shape, result.num_classes) == ("torch.export", (1, 3, 16, 16), 5)
    assert result.model.graph.input[0].name == "input"
    assert_matches_torch(result, tiny())


def test_torch_export_static_dims_override_the_declared_shape() -> None:
    result = intake_upload(pt2_bytes(dynamic_batch=False), "net.pt2", (1, 3, 224, 224))
    assert result.input_shape == (2, 3, 16, 16)
    assert_matches_torch(result, tiny(), batch=2)


def edit_program(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, content: bytes) -> bytes:
        if name != "models/model.json":
            return content
        program = json.loads(content)
        edit(program)
        return json.dumps(program).encode()

    return change


def first_node(program: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = program["graph_module"]["graph"]["nodes"][0]
    return node


def set_first_target(target: str) -> Callable[[dict[str, Any]], None]:
    return lambda program: first_node(program).__setitem__("target", target)


def inject_expr(marker: Path) -> Callable[[dict[str, Any]], None]:
    def edit(program: dict[str, Any]) -> None:  # sympy.sympify would eval this
        sizes = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        sizes[0]["as_expr"]["expr_str"] = f"__import__('os').system('touch {marker}')"

    return edit


def inject_guard(marker: Path) -> Callable[[dict[str, Any]], None]:
    return lambda program: program.__setitem__("guards_code", [f"__import__('os').system('touch {marker}') == 0"])


def pickled_weights(name: str, content: bytes) -> bytes:
    if name != "data/weights/model_weights_config.json":
        return content
    config = json.loads(content)
    next(iter(config["config"].values()))["use_pickle"] = True
    return json.dumps(config).encode()


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        ("sample_inputs", "sample inputs"),
        ("target", "not a torch operator"),
        ("file_op", "not a torch operator"),
        ("expr", "shape expression"),
        ("guard", "input guard"),
        ("pickled_weights", "as a pickle"),
        ("aotinductor", "compiled code"),
    ],
)
def test_hostile_torch_export_archives_are_refused(pt2: bytes, tmp_path: Path, attack: str, words: str) -> None:
    marker = tmp_path / "pwned"
    evil_pickle = torch_save_bytes(Marker(marker))
    changes: dict[str, Callable[[str, bytes], bytes]] = {
        # torch.export.load retries the sample inputs with weights_only=False: this runs the command in torch 2.14
        "sample_inputs": lambda name, c: evil_pickle if name == "data/sample_inputs/model.pt" else c,
        "target": edit_program(set_first_target("torch.os.system")),
        "file_op": edit_program(set_first_target("torch.ops.aten.from_file.default")),
        "expr": edit_program(inject_expr(marker)),
        "guard": edit_program(inject_guard(marker)),
        "pickled_weights": pickled_weights,
        "aotinductor": lambda name, c: c,
    }
    archive = rewrite_zip(pt2, changes[attack])
    if attack == "aotinductor":
        archive = add_member(archive, "archive/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(UnsafeModelFormat, match=words):
        intake_upload(archive, "evil.pt2", SHAPE)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("member", "copy"),
    [
        ("data/sample_inputs/model.pt", "pickle"),
        ("data/constants/model_constants_config.json", "config"),
        ("models/model.json", "config"),
    ],
)
def test_a_second_member_of_the_same_name_is_refused_before_anything_reads_it(
    pt2: bytes, tmp_path: Path, member: str, copy: str
) -> None:
    """The audit would read one copy and torch the other: the archive is refused whole, and nothing runs."""
    marker = tmp_path / "pwned"
    content = torch_save_bytes(Marker(marker)) if copy == "pickle" else b'{"config": {}}'
    archive = with_duplicate(pt2, member, content)
    with pytest.raises(UnprocessableModel, match=re.escape(f"two members named 'archive/{member}'")):
        intake_upload(archive, "evil.pt2", SHAPE)
    assert not marker.exists()


def test_torchscript_whose_code_inflates_like_a_zip_bomb_is_refused_unread() -> None:
    bomb = with_inflating_member(jit_bytes(torch.jit.script(tiny())), "code/__torch__/padding.py", 256 << 20)
    assert len(bomb) < 2 * 2**20
    with pytest.raises(UnprocessableModel, match=r"padding\.py in the archive inflates"):
        intake_upload(bomb, "net.pt", SHAPE)


def test_an_archive_under_two_root_folders_is_refused(pt2: bytes) -> None:
    archive = add_member(pt2, "other/data/sample_inputs/model.pt", b"")
    with pytest.raises(UnprocessableModel, match="not all in one folder"):
        intake_upload(archive, "evil.pt2", SHAPE)


def test_the_process_guard_makes_every_torch_load_weights_only(tmp_path: Path) -> None:
    """With the guard set (the splitter sets it at start unless pickles are allowed), weights_only=False loads
    weights only: a pickle that would run a command fails to load, and the command never runs."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(torch_save_bytes(Marker(marker)))
    script = (
        "import sys, torch\n"
        "from model_splitter.intake.torch_formats import refuse_code_in_torch_loads\n"
        "refuse_code_in_torch_loads()\n"
        "try:\n"
        f"    torch.load({str(evil)!r}, weights_only=False)\n"
        "except Exception as exc:\n"
        "    print('refused:', type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "refused: UnpicklingError" in done.stdout, done.stdout + done.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------- pickles


def test_pickled_module_is_refused_naming_the_safe_formats() -> None:
    with pytest.raises(UnsafeModelFormat) as caught:
        intake_upload(torch_save_bytes(tiny()), "net.pt", SHAPE)
    message = caught.value.message
    for words in ("ONNX", "torch.jit.save", "torch.export", ".pt2", "torchvision architecture", "state_dict"):
        assert words in message
    assert caught.value.status_code == 422


def test_pickled_module_is_accepted_when_the_operator_allows_pickles() -> None:
    result = intake_upload(torch_save_bytes(tiny()), "net.pt", SHAPE, allow_pickle=True)
    assert result.num_classes == 5
    assert_matches_torch(result, tiny())


def test_allowed_pickle_must_hold_a_module() -> None:
    with pytest.raises(UnprocessableModel, match=r"not a torch\.nn\.Module"):
        intake_upload(torch_save_bytes([1, 2, 3]), "list.pt", SHAPE, allow_pickle=True)


@pytest.mark.parametrize("container", ["raw pickle", "torch.save zip"])
def test_pickle_that_runs_a_command_is_refused_without_running_it(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Marker(marker)) if container == "raw pickle" else torch_save_bytes(Marker(marker))
    with pytest.raises(UnsafeModelFormat, match="arbitrary code"):
        intake_upload(payload, "model.pkl", SHAPE)
    assert not marker.exists()


def test_state_dict_uploaded_as_a_model_points_at_torchvision_registration() -> None:
    with pytest.raises(UnprocessableModel, match="state_dict") as caught:
        intake_upload(torch_save_bytes(tiny().state_dict()), "weights.pth", SHAPE)
    assert not isinstance(caught.value, UnsafeModelFormat)
    assert "architecture name" in caught.value.message


def test_safetensors_uploaded_as_a_model_points_at_torchvision_registration() -> None:
    from safetensors.torch import save as save_safetensors

    data = save_safetensors(dict(tiny().state_dict()))
    assert detect_format(data, "weights.bin") == "safetensors"
    with pytest.raises(UnprocessableModel, match="architecture name"):
        intake_upload(data, "weights.safetensors", SHAPE)


# ------------------------------------------------------------------------------------------------------- ONNX


def onnx_linear(
    opset: int = 17, input_dims: list[int | str] | None = None, elem_type: int = TensorProto.FLOAT
) -> onnx.ModelProto:
    """y = x @ W + b with a 4 -> 3 weight; batch dimension symbolic unless ``input_dims`` says otherwise."""
    dims = input_dims if input_dims is not None else ["N", 4]
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32) / 10)
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, -0.2, 0.3])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", elem_type, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 3])],
        initializer=[weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_onnx_upload_takes_dynamic_dims_from_the_declared_shape() -> None:
    result = intake_upload(onnx_linear().SerializeToString(), "linear.onnx", (2, 4))
    assert (result.source_format, result.input_shape, result.num_classes) == ("onnx", (2, 4), 3)
    assert result.export_max_abs_diff is None and result.weights_trained
    x = np.ones((3, 4), dtype=np.float32)
    expected = x @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10) + np.array([0.1, -0.2, 0.3], np.float32)
    np.testing.assert_allclose(run_onnx(result.model, x), expected, atol=1e-5)


def test_onnx_static_dims_override_the_declared_shape() -> None:
    result = intake_upload(onnx_linear(input_dims=[5, 4]).SerializeToString(), None, (1, 3, 224, 224))
    assert result.input_shape == (5, 4)


def test_old_onnx_opset_is_upgraded() -> None:
    result = intake_upload(onnx_linear(opset=13).SerializeToString(), "old.onnx", (1, 4))
    assert default_opset(result.model) == 17
    assert run_onnx(result.model, np.zeros((1, 4), np.float32)).shape == (1, 3)


def test_onnx_with_external_data_is_refused_as_path_traversal() -> None:
    model = onnx_linear()
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "48")):
        weight.external_data.add(key=key, value=value)
    with pytest.raises(UnsafeModelFormat, match="single-file") as caught:
        intake_upload(model.SerializeToString(), "evil.onnx", (1, 4))
    assert "path traversal" in caught.value.message and "../../etc/passwd" in caught.value.message


def test_onnx_with_two_inputs_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two_inputs",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4]) for name in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(UnprocessableModel, match=r"2 inputs .*single-input"):
        intake_upload(model.SerializeToString(), "two.onnx", (1, 4))


def test_onnx_with_integer_input_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["y"], to=TensorProto.FLOAT)],
        "ids",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(UnprocessableModel, match="not a float tensor"):
        intake_upload(model.SerializeToString(), "ids.onnx", (1, 4))


def test_onnx_that_does_not_run_reports_onnxruntime_message() -> None:
    with pytest.raises(UnprocessableModel, match="does not run in onnxruntime"):
        intake_upload(onnx_linear(input_dims=["N", 7]).SerializeToString(), "bad.onnx", (1, 7))


def test_onnx_that_fails_the_checker_is_unprocessable() -> None:
    model = onnx_linear()
    model.graph.node[0].input[1] = "missing_weight"
    with pytest.raises(UnprocessableModel, match="invalid"):
        intake_upload(model.SerializeToString(), "broken.onnx", (1, 4))


def test_declared_shape_of_the_wrong_rank_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="2 dimensions"):
        intake_upload(onnx_linear().SerializeToString(), "linear.onnx", (1, 3, 224, 224))


@pytest.mark.parametrize(
    ("data", "filename", "words"),
    [
        (b"\x13\x37" * 64 + bytes(range(256)), "model.onnx", "not an ONNX model"),
        (b"hello, this is a README\nnot a model at all\n", "README.txt", "not a model we recognise"),
        (bytes(range(256)) * 4, "weights.bin", "not a model we recognise"),
        (b"PK\x03\x04 truncated zip", "model.pt", "not a model we recognise"),
    ],
)
def test_garbage_is_a_bad_request_naming_accepted_formats(data: bytes, filename: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words) as caught:
        intake_upload(data, filename, SHAPE)
    assert not isinstance(caught.value, InvalidArgument)


# ------------------------------------------------------------------------------------------------ torchvision


def test_architectures_cover_the_three_families_each_sorted() -> None:
    listed = architectures()
    by_family = {family: [a.name for a in listed if a.family == family] for family in FAMILIES}
    assert all(names == sorted(names) for names in by_family.values())
    assert {"resnet18", "inception_v3", "vit_b_16"} <= set(by_family["classification"])
    assert {"fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"} <= set(
        by_family["segmentation"]
    )
    assert {"fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"} <= set(by_family["detection"])


def test_unknown_architecture_says_how_to_list_them() -> None:
    with pytest.raises(InvalidArgument, match="GET /api/architectures"):
        intake_torchvision("resnet19", None, None, SHAPE)


@pytest.fixture(scope="module")
def resnet18_10() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def test_resnet18_state_dict_pth_is_loaded_with_its_num_classes(resnet18_10: torch.nn.Module) -> None:
    shape = (1, 3, 64, 64)
    result = intake_torchvision("resnet18", torch_save_bytes(resnet18_10.state_dict()), "r18.pth", shape)
    assert (result.source_format, result.architecture, result.input_shape) == ("torchvision", "resnet18", shape)
    assert result.weights_trained and result.num_classes == 10
    assert_matches_torch(result, resnet18_10)


def test_safetensors_and_checkpoint_dicts_give_the_same_weights(resnet18_10: torch.nn.Module) -> None:
    from safetensors.torch import save as save_safetensors

    from model_splitter.intake.torch_formats import load_state_dict

    expected = resnet18_10.state_dict()
    from_safetensors = load_state_dict(save_safetensors(dict(expected)), "r18.safetensors")
    from_checkpoint = load_state_dict(torch_save_bytes({"epoch": 3, "state_dict": expected}), "ckpt.pth")
    for loaded in (from_safetensors, from_checkpoint):
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_state_dict_with_a_wrong_key_names_it(resnet18_10: torch.nn.Module) -> None:
    state = dict(resnet18_10.state_dict())
    state["fc.weights"] = state.pop("fc.weight")
    with pytest.raises(UnprocessableModel, match=r"missing keys: fc\.weight.*unexpected keys: fc\.weights"):
        intake_torchvision("resnet18", torch_save_bytes(state), "r18.pth", (1, 3, 64, 64))


def test_state_dict_of_another_architecture_reports_shape_mismatches() -> None:
    state = {"conv.weight": torch.zeros(4, 3, 3, 3)}
    with pytest.raises(UnprocessableModel, match="does not fit the architecture"):
        intake_torchvision("resnet18", torch_save_bytes(state), "tiny.pth", SHAPE)


def test_weights_that_are_a_hostile_pickle_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafeModelFormat, match="state_dict"):
        intake_torchvision("resnet18", torch_save_bytes(Marker(marker)), "r18.pth", SHAPE)
    assert not marker.exists()


def test_garbage_weights_are_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        intake_torchvision("resnet18", b"definitely not weights", "r18.safetensors", SHAPE)


def test_architecture_without_weights_is_marked_untrained() -> None:
    result = intake_torchvision("squeezenet1_1", None, None, (1, 3, 64, 64))
    assert not result.weights_trained and result.num_classes == 1000
    assert result.export_max_abs_diff is not None and result.export_max_abs_diff <= 1e-4


def test_googlenet_builds_without_auxiliary_heads_when_untrained() -> None:
    module = build("googlenet", None).module
    assert module.aux1 is None and module.aux2 is None  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------- labels


def test_imagenet_labels_come_from_metadata_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("imagenet_labels tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    imagenet_labels.cache_clear()
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[-1] == "toilet tissue"


def test_labels_for() -> None:
    assert labels_for(None) is None
    assert labels_for(1000) == imagenet_labels()
    assert labels_for(3) == ["class_0", "class_1", "class_2"]


def test_an_architecture_that_cannot_be_built_on_the_meta_device_takes_its_state_dict() -> None:
    """regnet computes its stage widths with real tensors: finding num_classes falls back to a CPU build."""
    import torchvision

    module = torchvision.models.regnet_y_400mf(weights=None, num_classes=7)
    result = intake_torchvision("regnet_y_400mf", torch_save_bytes(module.state_dict()), "w.pth", (1, 3, 64, 64))
    assert result.num_classes == 7 and result.weights_trained
    assert result.export_max_abs_diff is not None and result.export_max_abs_diff <= 1e-4
