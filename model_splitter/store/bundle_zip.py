"""A split as one zip, for robots that cannot reach the splitter: upload it to POST /api/bundles."""

from __future__ import annotations

import io
import zipfile

from model_splitter.store.registry import HEAD_CODES_FILE, TAIL_CODES_FILE, Registry


def bundle_zip(registry: Registry, split_id: str) -> bytes:
    manifest = registry.get_split(split_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("manifest.json", "head.onnx", "tail.onnx"):
            archive.write(registry.split_file(split_id, name), arcname=name)
        if manifest.code_graphs is not None:  # the halves with the codes inside, for sides that quantize in graph
            for name in (HEAD_CODES_FILE, TAIL_CODES_FILE):
                archive.write(registry.split_file(split_id, name), arcname=name)
        archive.write(registry.model_onnx_path(manifest.model_id), arcname="model.onnx")
    return buffer.getvalue()
