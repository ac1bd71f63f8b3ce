"""Torch -> single-file ONNX, with a dynamic batch axis, checked against torch on a random input.

The TorchScript-based exporter (``dynamo=False``) is used for ``nn.Module`` and TorchScript inputs: it is about
seven times faster than the dynamo exporter here, keeps BatchNorm as its own node (ONNX Runtime fuses it at
session creation anyway) and names every node by its module scope (``/layer2/layer2.1/relu_1/Relu``), from which
split points get their human labels. ``torch.export`` programs (``.pt2``) can only go through the dynamo exporter;
their module paths are in each node's ``pkg.torch.onnx.name_scopes`` metadata, which ``labels`` reads too.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterable

import numpy as np
import onnx
import torch

from common.errors import UnprocessableModel
from model_splitter.graph.inputs import fed_inputs

logger = logging.getLogger(__name__)

OPSET = 17
# torch.onnx's exporters keep global state (GLOBALS.in_onnx_export and friends): two exports at once in one
# process collide ("GLOBALS.in_onnx_export must be False"). Registrations in the job threads take turns here.
_EXPORT_LOCK = threading.Lock()
MAX_EXPORT_BATCH = 64
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
# protobuf's limit on one message: an ONNX model holding its weights cannot be larger, and models and splits are
# kept, checked and shipped as single files.
MAX_ONNX_BYTES = 2**31 - 1


def export_module(
    module: torch.nn.Module | torch.jit.ScriptModule, input_shape: tuple[int, ...], dynamic_batch: bool = True
) -> onnx.ModelProto:
    """Export an eval-mode module (or TorchScript module) to an in-memory ONNX model, with a dynamic batch axis
    unless the module handles one image at a time (``dynamic_batch=False``: torchvision's detectors)."""
    module.eval()
    example = torch.randn(*input_shape)
    buffer = io.BytesIO()
    try:
        with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # file objects work; the stub names only paths
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many unrelated types; the person needs the reason either way
        raise UnprocessableModel(
            f"the model could not be exported to ONNX for input shape {input_shape}: {exc}"
        ) from exc
    return onnx.load_from_string(buffer.getvalue())


def export_any(
    module: torch.nn.Module | torch.jit.ScriptModule, input_shape: tuple[int, ...], dynamic_batch: bool = True
) -> onnx.ModelProto:
    """The TorchScript exporter first (node names carry module paths); ``torch.export`` and the dynamo exporter when
    it cannot convert an operator (``aten::_native_multi_head_attention`` in ViT and Swin); 422 when both fail."""
    check_fits_one_file(module.state_dict().values())
    try:
        return export_module(module, input_shape, dynamic_batch)
    except UnprocessableModel as first:
        if isinstance(module, torch.jit.ScriptModule):
            raise
        try:
            dims = ({0: torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)},) if dynamic_batch else None
            example = torch.randn(2 if dynamic_batch else input_shape[0], *input_shape[1:])
            with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.export.export(module, (example,), dynamic_shapes=dims)
        except Exception as exc:
            raise UnprocessableModel(
                f"{first.message}; torch.export could not trace it either: {str(exc).splitlines()[0][:300]}"
            ) from exc
        return export_program(program, input_shape)


def check_fits_one_file(tensors: Iterable[torch.Tensor]) -> None:
    """Refuse, before exporting, weights that no single ONNX file can hold (rather than failing minutes later in a
    serialiser with a message nobody can act on)."""
    size = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    if size > MAX_ONNX_BYTES:
        raise UnprocessableModel(
            f"the model has {size / 1e9:.2f} GB of weights; one ONNX file holds at most {MAX_ONNX_BYTES / 1e9:.2f} "
            "GB (protobuf's limit) and models and splits are kept as single ONNX files: choose a smaller variant "
            "of the architecture"
        )


def export_program(program: torch.export.ExportedProgram, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """Export a ``torch.export`` program through the dynamo exporter, as one file with weights inside."""
    constants = [value for value in program.constants.values() if isinstance(value, torch.Tensor)]
    check_fits_one_file([*program.state_dict.values(), *constants])
    try:
        with _EXPORT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, dynamo=True, opset_version=max(OPSET, 18), external_data=False, verbose=False
            )
    except Exception as exc:
        raise UnprocessableModel(f"the torch.export program could not be exported to ONNX: {exc}") from exc
    if onnx_program is None:  # pragma: no cover - the dynamo path always returns a program
        raise UnprocessableModel("the torch.export program produced no ONNX graph")
    model = onnx_program.model_proto
    _rename_single_io(model)
    return model


def _rename_single_io(model: onnx.ModelProto) -> None:
    """Give a one-input one-output graph the same io names as ``export_module`` produces."""
    graph = model.graph
    inputs = fed_inputs(graph)
    if len(inputs) != 1 or len(graph.output) != 1:
        return
    renames = {inputs[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    inputs[0].name = INPUT_NAME
    graph.output[0].name = OUTPUT_NAME


def max_abs_difference_to_torch(
    reference: torch.nn.Module | torch.jit.ScriptModule, model: onnx.ModelProto, input_shape: tuple[int, ...]
) -> float:
    """Run torch and ONNX Runtime on the same random input; the largest absolute output difference."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    sample = rng.standard_normal(input_shape, dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(sample))
    if isinstance(expected, (tuple, list)):
        expected = expected[0]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    actual = session.run(None, {input_name: sample})[0]
    # initial=0: a detector may find no box at all in random input, which is an exact match
    return float(np.max(np.abs(np.asarray(actual) - expected.detach().numpy()), initial=0.0))
