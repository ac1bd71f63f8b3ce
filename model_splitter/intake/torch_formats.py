"""Loaders for the torch file formats the splitter accepts, each preceded by the checks that make it safe.

None of torch's loaders is safe on an untrusted file by itself, so every loader here first reads the archive
as plain zip/JSON/text and refuses what could run code or touch files on this machine:

* TorchScript archives hold no pickled Python, but their ``code/`` runs in the TorchScript interpreter (already
  inside ``torch.jit.load``, for ``__setstate__``) and can call ``aten::save`` (writes any file) and
  ``aten::from_file`` (reads any file). Those names are refused in the source, and the loaded graphs may use
  only tensor-computation operator namespaces.
* ``torch.export`` archives (``.pt2``) are JSON plus raw tensor bytes, but ``torch.export.load`` also unpickles
  ``use_pickle`` weights and "opaque" constants, falls back to ``weights_only=False`` for the sample inputs,
  passes every ``expr_str`` to ``sympy.sympify`` (``eval``), resolves node targets by ``getattr`` from the
  ``torch`` module (``torch.os.system`` resolves), ``exec``-s ``guards_code`` in ``program.module()`` and loads
  AOTInductor shared libraries. ``audit_pt2`` allows only what ``torch.export.save`` writes for a plain model.
* Whole pickled modules run arbitrary code by design; ``load_pickled_module`` exists only for the explicit,
  operator-enabled ``allow_pickle`` setting.

Even so, model intake belongs in a sandboxed process: these checks narrow the attack surface, they do not make
the torch deserializers a security boundary.
"""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

from common.errors import BadRequest, UnprocessableModel, UnsafeModelFormat
from common.zip_audit import ZipLimits, audit_zip
from common.zip_audit import read_member as read_audited

SAFE_FILE_FORMATS = (
    "ONNX (.onnx, one file with the weights inside), TorchScript (torch.jit.save) or torch.export (.pt2, "
    "torch.export.save)"
)
SAFE_FORMATS = SAFE_FILE_FORMATS + ", or a torchvision architecture name plus a state_dict (.pth or .safetensors)"

# Ops that touch the file system; reachable from TorchScript code and torch.export graphs alike.
FILE_OPS = ("from_file", "save", "load_tensor")
_FILE_OP_WORDS = re.compile(r"\b(?:" + "|".join(FILE_OPS) + r")\b")
# Other namespaces reach distributed, profiler or debug ops; models for splitting never use them.
_SCRIPT_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "torchvision"})
_MAX_JSON_BYTES = 256 * 2**20
# TorchScript source of real models is kilobytes to a few megabytes.
MAX_CODE_BYTES = 64 * 2**20
TORCH_ZIP_LIMITS = ZipLimits()
# torch.load reads this at every call and then loads weights only, even when weights_only=False is passed.
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


def zip_members(data: bytes) -> list[str] | None:
    """Member names of a zip archive without torch's root folder (``archive/``), or None for a non-zip.

    The archive is audited first (``common.zip_audit``): a repeated member name, a member that inflates like a zip
    bomb, or members under more than one root folder are refused before torch or any check here reads a byte.
    """
    if not data.startswith(b"PK\x03\x04") or not zipfile.is_zipfile(io.BytesIO(data)):
        return None  # not a zip at all: detection goes on to the other formats
    infos = audit_zip(data, TORCH_ZIP_LIMITS, UnprocessableModel, "the archive")
    roots = {info.filename.split("/", 1)[0] for info in infos if "/" in info.filename}
    if len(roots) > 1 or any("/" not in info.filename for info in infos):
        raise UnprocessableModel(
            "the archive's members are not all in one folder, as torch.save, torch.jit.save and torch.export.save "
            f"write them (folders: {', '.join(sorted(roots)[:4]) or 'none'}); save the model again"
        )
    return [info.filename.split("/", 1)[1] for info in infos]


def is_torch_export_archive(members: list[str]) -> bool:
    return "archive_format" in members or any(m.startswith("models/") and m.endswith(".json") for m in members)


def is_torchscript_archive(members: list[str]) -> bool:
    return any(m.startswith("code/") for m in members) and any(m.endswith(".pkl") for m in members)


def read_member(zf: zipfile.ZipFile, relative: str) -> bytes:
    """Read ``relative`` under the archive's root folder (unique: ``zip_members`` audited it), refusing zip bombs."""
    for info in zf.infolist():
        if info.filename.split("/", 1)[-1] == relative:
            if info.file_size > _MAX_JSON_BYTES:
                raise UnprocessableModel(f"{relative} inside the archive is larger than {_MAX_JSON_BYTES} bytes")
            return read_audited(zf, info, UnprocessableModel, "the archive")
    raise UnprocessableModel(f"the archive has no {relative}; save it again with torch.export.save")


# --------------------------------------------------------------------------------------------------- TorchScript


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    """Load a TorchScript archive whose code calls no file-system, distributed or debug operators."""
    _refuse_file_ops_in_code(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.* is deprecated; the warning is not the person's problem
            module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(data), map_location="cpu"
            )
    except Exception as exc:  # the TorchScript loader raises RuntimeError, ValueError, KeyError ...
        raise UnprocessableModel(f"the TorchScript archive could not be loaded: {shorten(str(exc))}") from exc
    _refuse_foreign_ops_in_graphs(module)
    return module


def _refuse_file_ops_in_code(data: bytes) -> None:
    """Before loading: ``torch.jit.load`` already runs TorchScript ``__setstate__`` methods.

    An operator's name has to appear in the source to be called, so a word search cannot be dodged.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        code = [info for info in zf.infolist() if _is_code(info.filename.split("/", 1)[-1])]
        total = sum(info.file_size for info in code)
        if total > MAX_CODE_BYTES:
            raise UnprocessableModel(
                f"the TorchScript code in the archive is {total} bytes; at most {MAX_CODE_BYTES} are accepted"
            )
        for info in code:
            relative = info.filename.split("/", 1)[-1]
            text = read_audited(zf, info, UnprocessableModel, "the archive").decode("utf-8", errors="replace")
            match = _FILE_OP_WORDS.search(text)
            if match:
                raise UnsafeModelFormat(
                    f"the TorchScript code in {relative} calls '{match.group(0)}', which reads or writes files; "
                    "a model for splitting must be a pure computation"
                )


def _is_code(relative: str) -> bool:
    return relative.startswith("code/") and not relative.endswith(".pkl")


def _refuse_foreign_ops_in_graphs(module: torch.jit.ScriptModule) -> None:
    """After loading, on the compiled graphs, where no spelling trick can hide an operator's namespace."""
    for submodule in module.modules():
        compiled: Any = getattr(submodule, "_c", None)  # the C++ ScriptModule behind the Python wrapper
        for name in compiled._method_names() if compiled is not None else []:
            graph = compiled._get_method(name).graph.copy()
            torch._C._jit_pass_inline(graph)  # calls into other functions become their nodes
            for kind in _node_kinds(graph):
                namespace, _, op = kind.partition("::")
                if namespace not in _SCRIPT_NAMESPACES or op in FILE_OPS:
                    raise UnsafeModelFormat(
                        f"the TorchScript method {name} calls {kind}, which is not a tensor computation operator "
                        f"(accepted namespaces: {', '.join(sorted(_SCRIPT_NAMESPACES))})"
                    )


def _node_kinds(graph: Any) -> Iterator[str]:
    """Kinds of every node in a TorchScript graph, including nested blocks and fork subgraphs."""
    stack = [graph.nodes()]
    while stack:
        for node in stack.pop():
            yield str(node.kind())
            stack.extend(block.nodes() for block in node.blocks())
            stack.extend(node.g(a).nodes() for a in node.attributeNames() if node.kindOf(a) == "g")
            stack.extend(g.nodes() for a in node.attributeNames() if node.kindOf(a) == "gs" for g in node.gs(a))


# ---------------------------------------------------------------------------------------------- torch.export


def refuse_code_in_torch_loads() -> None:
    """Make every ``torch.load`` in this process weights-only, whatever its caller asks for.

    ``torch.export.load`` retries sample inputs with ``weights_only=False`` when the safe load fails, and its
    loaders unpickle ``use_pickle`` payloads that way; the audits refuse both cases, and this makes a gap in them
    fail safe instead of running code. Set once at start, unless the operator allowed pickles (``allow_pickle``),
    which need the full unpickler by definition.
    """
    os.environ[FORCE_WEIGHTS_ONLY] = "1"


def load_pickled_module(data: bytes) -> torch.nn.Module:
    """Unpickle a whole ``torch.save``-d module. EXECUTES CODE FROM THE FILE: only for ``allow_pickle``."""
    try:
        loaded = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    except Exception as exc:  # an unpickler can raise anything, including from the file's own code
        raise UnprocessableModel(f"the pickled model could not be loaded: {shorten(str(exc))}") from exc
    if not isinstance(loaded, torch.nn.Module):
        raise UnprocessableModel(
            f"the pickle holds a {type(loaded).__name__}, not a torch.nn.Module; save the whole model, "
            "or better, use one of: " + SAFE_FORMATS
        )
    return loaded


def load_weights_only(data: bytes) -> object:
    """``torch.load`` with the restricted unpickler; UnsafeModelFormat when the pickle needs more than tensors."""
    zip_members(data)  # the zip layout of torch.save: audited like any archive before torch reads it
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError for foreign globals, RuntimeError for broken archives
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UnsafeModelFormat(
                "the file is a pickle that references Python code, not just tensors; loading it would run that "
                "code. Save only the weights (torch.save(model.state_dict(), path)) or use one of: " + SAFE_FORMATS
            ) from exc
        raise BadRequest(f"the weights file could not be read as a torch.save file: {shorten(str(exc))}") from exc


def is_safetensors(data: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON object."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def load_state_dict(data: bytes, filename: str | None) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a torch.save file (weights only), unwrapping training checkpoints."""
    if is_safetensors(data) or (filename or "").lower().endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        try:
            loaded: object = load_safetensors(data)
        except Exception as exc:  # safetensors raises its own SafetensorError for any malformed header
            raise BadRequest(f"not a valid .safetensors file: {shorten(str(exc))}") from exc
    else:
        loaded = load_weights_only(data)
    return _as_state_dict(loaded)


def _as_state_dict(loaded: object) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):  # common training checkpoint layouts
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise UnprocessableModel("the weights file does not hold a state_dict (a dict of parameter names to tensors)")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(loaded):
        raise UnprocessableModel("the state_dict holds values that are not tensors; save model.state_dict() itself")
    if all(key.startswith("module.") for key in tensors):  # saved from DataParallel / DistributedDataParallel
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    return tensors


def shorten(message: str, limit: int = 400) -> str:
    """The first informative lines of an exporter/loader message: they run to pages of graph dumps."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = " ".join(lines[:4])
    return text if len(text) <= limit else text[: limit - 3] + "..."
