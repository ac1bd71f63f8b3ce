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

import ast
import io
import json
import re
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

from common.errors import BadRequest, UnprocessableModel, UnsafeModelFormat

SAFE_FILE_FORMATS = (
    "ONNX (.onnx, one file with the weights inside), TorchScript (torch.jit.save) or torch.export (.pt2, "
    "torch.export.save)"
)
SAFE_FORMATS = SAFE_FILE_FORMATS + ", or a torchvision architecture name plus a state_dict (.pth or .safetensors)"

# Ops that touch the file system; reachable from TorchScript code and torch.export graphs alike.
_FILE_OPS = ("from_file", "save", "load_tensor")
_FILE_OP_WORDS = re.compile(r"\b(?:" + "|".join(_FILE_OPS) + r")\b")
# Other namespaces reach distributed, profiler or debug ops; models for splitting never use them.
_SCRIPT_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "torchvision"})
_MAX_JSON_BYTES = 256 * 2**20


def zip_members(data: bytes) -> list[str] | None:
    """Member names of a zip archive without torch's root folder (``archive/``), or None for a non-zip."""
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    return [name.split("/", 1)[1] if "/" in name else name for name in names]


def is_torch_export_archive(members: list[str]) -> bool:
    return "archive_format" in members or any(m.startswith("models/") and m.endswith(".json") for m in members)


def is_torchscript_archive(members: list[str]) -> bool:
    return any(m.startswith("code/") for m in members) and any(m.endswith(".pkl") for m in members)


def _read_member(zf: zipfile.ZipFile, relative: str) -> bytes:
    """Read ``relative`` under whatever root folder the archive uses, refusing zip bombs."""
    for info in zf.infolist():
        if info.filename.split("/", 1)[-1] == relative:
            if info.file_size > _MAX_JSON_BYTES:
                raise UnprocessableModel(f"{relative} inside the archive is larger than {_MAX_JSON_BYTES} bytes")
            return zf.read(info)
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
        for info in zf.infolist():
            relative = info.filename.split("/", 1)[-1]
            if not relative.startswith("code/") or relative.endswith(".pkl"):
                continue
            match = _FILE_OP_WORDS.search(zf.read(info).decode("utf-8", errors="replace"))
            if match:
                raise UnsafeModelFormat(
                    f"the TorchScript code in {relative} calls '{match.group(0)}', which reads or writes files; "
                    "a model for splitting must be a pure computation"
                )


def _refuse_foreign_ops_in_graphs(module: torch.jit.ScriptModule) -> None:
    """After loading, on the compiled graphs, where no spelling trick can hide an operator's namespace."""
    for submodule in module.modules():
        compiled: Any = getattr(submodule, "_c", None)  # the C++ ScriptModule behind the Python wrapper
        for name in compiled._method_names() if compiled is not None else []:
            graph = compiled._get_method(name).graph.copy()
            torch._C._jit_pass_inline(graph)  # calls into other functions become their nodes
            for kind in _node_kinds(graph):
                namespace, _, op = kind.partition("::")
                if namespace not in _SCRIPT_NAMESPACES or op in _FILE_OPS:
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


def load_pt2(data: bytes) -> torch.export.ExportedProgram:
    """``torch.export.load`` an archive that ``audit_pt2`` accepted."""
    audit_pt2(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(io.BytesIO(data))
    except Exception as exc:
        raise UnprocessableModel(f"the torch.export archive could not be loaded: {shorten(str(exc))}") from exc


def audit_pt2(data: bytes) -> None:
    """Refuse every part of a ``.pt2`` that ``torch.export.load`` or ``program.module()`` would execute."""
    members = zip_members(data) or []
    _refuse_compiled_code(members)
    if [m for m in members if m.startswith("models/")] != ["models/model.json"]:
        raise UnprocessableModel("a torch.export archive must hold exactly one program, saved by torch.export.save")
    if "data/weights/model.pt" in members or "data/constants/model.pt" in members:
        raise UnsafeModelFormat(
            "this .pt2 stores its weights as a pickle (the pre-2.8 layout); save it again with torch.export.save "
            "from torch 2.8 or newer"
        )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        if _read_member(zf, "archive_format").strip() != b"pt2":
            raise UnprocessableModel("the archive is not in the torch.export .pt2 format")
        _check_payload_config(_read_json(zf, "data/weights/model_weights_config.json"), "weight")
        _check_payload_config(_read_json(zf, "data/constants/model_constants_config.json"), "constant")
        _check_sample_inputs(_read_member(zf, "data/sample_inputs/model.pt"))
        _check_program_json(_read_json(zf, "models/model.json"))


def _refuse_compiled_code(members: list[str]) -> None:
    compiled = ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")
    for member in members:
        if member.startswith(compiled):
            raise UnsafeModelFormat(
                f"this .pt2 contains compiled code ({member}); upload the plain torch.export.save archive, "
                "not an AOTInductor or ExecuTorch package"
            )


def _read_json(zf: zipfile.ZipFile, relative: str) -> Any:
    try:
        return json.loads(_read_member(zf, relative))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnprocessableModel(f"{relative} inside the .pt2 is not valid JSON: {exc}") from exc


def _check_payload_config(config: Any, kind: str) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise UnprocessableModel(f"the {kind} table of the .pt2 is malformed")
    for name, meta in entries.items():
        path = meta.get("path_name", "") if isinstance(meta, dict) else ""
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False or not isinstance(path, str):
            raise UnsafeModelFormat(f"the .pt2 stores {kind} '{name}' as a pickle; only plain tensors are accepted")
        if kind == "constant" and not path.startswith("tensor_"):
            raise UnsafeModelFormat(
                f"the .pt2 holds constant '{name}', a script or opaque object; only tensor constants are accepted"
            )


def _check_sample_inputs(raw: bytes) -> None:
    # torch.export.load retries these with weights_only=False when the safe load fails; make sure it cannot fail
    try:
        torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise UnsafeModelFormat(
            "the sample inputs inside the .pt2 are not plain tensors (loading them would run pickled code)"
        ) from exc


def _check_program_json(program: Any) -> None:
    if not isinstance(program, dict):
        raise UnprocessableModel("models/model.json inside the .pt2 is not an exported program")
    for key, value in _walk(program):
        if key == "target":
            _check_target(value)
        elif key == "expr_str":
            _check_sympy_expr(value)
        elif key in ("as_custom_obj", "custom_obj") and value:
            raise UnsafeModelFormat("the .pt2 uses TorchBind script objects, which we do not load")
    guards = program.get("guards_code", [])
    for guard in guards if isinstance(guards, list) else [guards]:
        _check_guard(guard)


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, depth first, without recursion limits."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                yield key, value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(current)


# Non-op call targets torch.export serializes (torch._export.serde.serialize._SYM_OPS plus getitem).
_PY_TARGETS = frozenset(
    {
        "_operator.getitem",
        "_operator.add",
        "_operator.and_",
        "_operator.eq",
        "_operator.floordiv",
        "_operator.ge",
        "_operator.gt",
        "_operator.le",
        "_operator.lshift",
        "_operator.lt",
        "_operator.mod",
        "_operator.mul",
        "_operator.ne",
        "_operator.neg",
        "_operator.or_",
        "_operator.pos",
        "_operator.pow",
        "_operator.rshift",
        "_operator.sub",
        "_operator.truediv",
        "math.trunc",
        "torch._sym_sqrt",
        "torch.sym_float",
        "torch.sym_int",
        "torch.sym_ite",
        "torch.sym_max",
        "torch.sym_min",
        "torch.sym_not",
        "torch.sym_sqrt",
    }
)
_OP_TARGET = re.compile(
    r"torch\.ops\.(aten|prims|higher_order|torchvision|quantized_decomposed)((?:\.(?!__)[A-Za-z_][A-Za-z0-9_]*){1,2})"
)


def _check_target(target: Any) -> None:
    if isinstance(target, str) and target in _PY_TARGETS:
        return
    resolved = _resolve_op(target) if isinstance(target, str) else None
    if isinstance(resolved, torch._ops.HigherOrderOperator):
        return
    if isinstance(resolved, torch._ops.OpOverload) and resolved._schema.name.split("::")[-1] not in _FILE_OPS:
        return
    raise UnsafeModelFormat(
        f"the .pt2 graph calls {str(target)[:120]!r}, which is not a torch operator we allow "
        "(aten, prims, higher-order and torchvision operators are accepted; nothing that touches files)"
    )


def _resolve_op(target: str) -> object:
    """The operator object a ``torch.ops.<namespace>.<op>[.<overload>]`` name denotes, None for anything else."""
    match = _OP_TARGET.fullmatch(target)
    if match is None:
        return None
    resolved: object = getattr(torch.ops, match.group(1))
    try:
        for name in match.group(2).lstrip(".").split("."):
            resolved = getattr(resolved, name)
    except Exception:  # unknown ops raise AttributeError or RuntimeError from the operator registry
        return None
    return resolved


# Names torch's own exports put into shape expressions (sympy srepr plus torch.utils._sympy.functions).
_SYMPY_NAMES = frozenset(
    {
        "Symbol",
        "Integer",
        "Rational",
        "Float",
        "Add",
        "Mul",
        "Pow",
        "Max",
        "Min",
        "Mod",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "Equality",
        "Unequality",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ExprCondPair",
        "true",
        "false",
        "BooleanTrue",
        "BooleanFalse",
        "Half",
        "One",
        "Zero",
        "NegativeOne",
        "oo",
        "Infinity",
        "NegativeInfinity",
        "zoo",
        "nan",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "IntTrueDiv",
        "FloatTrueDiv",
        "LShift",
        "RShift",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "FloatPow",
        "PowByNatural",
        "Identity",
    }
)
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not)
_STRUCTURE = (ast.Expression, ast.Load, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.keyword)
_SAFE_STRING = re.compile(r"[A-Za-z0-9_.+\-]*")


def _check_sympy_expr(expr: Any) -> None:
    """``sympy.sympify`` evals its input: allow only calls of known sympy classes on constants."""
    for node in _parse_expression(expr, "shape expression"):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SYMPY_NAMES:
            continue
        if isinstance(node, ast.Name) and node.id in _SYMPY_NAMES:
            continue
        if isinstance(node, _STRUCTURE + _ARITHMETIC) or _is_safe_constant(node):
            continue
        raise UnsafeModelFormat(f"the .pt2 contains a shape expression that is not plain arithmetic: {expr[:120]!r}")


_GUARD_NAMES = frozenset({"L", "math", "torch"})
_GUARD_ATTRIBUTES = frozenset(
    {
        "size",
        "stride",
        "storage_offset",
        "dim",
        "numel",
        "floor",
        "ceil",
        "trunc",
        "sqrt",
        "sym_max",
        "sym_min",
        "sym_float",
        "sym_int",
        "sym_not",
    }
)
_GUARD_STRUCTURE = (ast.Compare, ast.BoolOp, ast.Subscript, ast.Slice, ast.Call, ast.List)
_GUARD_OPERATORS = (ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _check_guard(guard: Any) -> None:
    """``program.module()`` execs these: allow only comparisons of input sizes, e.g. ``L['x'].size()[2] > 4``."""
    for node in _parse_expression(guard, "input guard"):
        if isinstance(node, ast.Name) and node.id in _GUARD_NAMES:
            continue
        if isinstance(node, ast.Attribute) and node.attr in _GUARD_ATTRIBUTES:
            continue
        if isinstance(node, _STRUCTURE + _ARITHMETIC + _GUARD_STRUCTURE + _GUARD_OPERATORS) or _is_safe_constant(node):
            continue
        raise UnsafeModelFormat(f"the .pt2 contains an input guard that is not a size comparison: {guard[:120]!r}")


def _parse_expression(text: Any, what: str) -> list[ast.AST]:
    if not isinstance(text, str):
        raise UnprocessableModel(f"the .pt2 has a malformed {what}")
    try:
        return list(ast.walk(ast.parse(text, mode="eval")))
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise UnsafeModelFormat(f"the .pt2 has a {what} that is not an expression: {text[:120]!r}") from exc


def _is_safe_constant(node: ast.AST) -> bool:
    if not isinstance(node, ast.Constant):
        return False
    if isinstance(node.value, str):  # symbol names and Float('1.5'); quotes would break out of generated code
        return _SAFE_STRING.fullmatch(node.value) is not None
    return node.value is None or isinstance(node.value, (bool, int, float))


# ------------------------------------------------------------------------------------------- pickles, weights


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
