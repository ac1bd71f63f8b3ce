"""Safety audit of ``torch.export`` archives (``.pt2``), run before torch reads a byte of them.

``torch.export.load`` evaluates code from the file (sympy expressions, guard code, pickled constants), so every
member that could carry code is checked against an allow-list first; see ``audit_pt2``.
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

from common.errors import UnprocessableModel, UnsafeModelFormat
from model_splitter.intake.torch_formats import FILE_OPS, read_member, shorten, zip_members


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
        if read_member(zf, "archive_format").strip() != b"pt2":
            raise UnprocessableModel("the archive is not in the torch.export .pt2 format")
        _check_payload_config(_read_json(zf, "data/weights/model_weights_config.json"), "weight")
        _check_payload_config(_read_json(zf, "data/constants/model_constants_config.json"), "constant")
        _check_sample_inputs(read_member(zf, "data/sample_inputs/model.pt"))
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
        return json.loads(read_member(zf, relative))
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
    if isinstance(resolved, torch._ops.OpOverload) and resolved._schema.name.split("::")[-1] not in FILE_OPS:
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
