"""Split bundles on the robot's and the edge's disk: fetched from the splitter or uploaded as a zip.

Each side keeps only its own half: the robot ``head.onnx``, the edge ``tail.onnx``, each beside the manifest and
the full model (for the all-robot and all-edge plans), and, where the split has them and the side asks for them,
its half with the codes inside (``head_codes.onnx``: the quantizer in the head's graph, model_splitter/quantize/
code_graphs.py). Every file is checked against the hashes in the manifest
before it is written, and written atomically (temporary file, then rename), so a half-written bundle is never seen.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from common.errors import BadRequest, NotFound, UpstreamTimeout, UpstreamUnavailable
from common.manifest import SplitManifest, is_hex, is_split_id, parse_manifest, sha256_hex
from common.peer_errors import peer_error
from common.storage import disk_space_for
from common.zip_audit import ZipLimits, audit_zip, read_member

Part = Literal["head", "tail"]
MAX_BUNDLE_MEMBER_BYTES = 2 * 1024**3
# A bundle holds a manifest, one half and the full model: a handful of members, none inflating like a zip bomb.
BUNDLE_LIMITS = ZipLimits(
    max_members=16, max_member_bytes=MAX_BUNDLE_MEMBER_BYTES, max_total_bytes=2 * MAX_BUNDLE_MEMBER_BYTES
)


@dataclass(frozen=True)
class BundleFiles:
    manifest: SplitManifest
    part: bytes
    full_model: bytes | None
    part_codes: bytes | None = None  # <part>_codes.onnx


def codes_file(part: Part) -> str:
    return f"{part}_codes.onnx"


def check_bundle(files: BundleFiles, part: Part) -> None:
    manifest = files.manifest
    expected = manifest.head_sha256 if part == "head" else manifest.tail_sha256
    if sha256_hex(files.part) != expected:
        raise BadRequest(f"{part}.onnx does not match the sha256 in manifest {manifest.id}")
    if files.part_codes is not None:
        graphs = manifest.code_graphs
        if graphs is None:
            raise BadRequest(f"manifest {manifest.id} names no code graphs, the bundle holds {codes_file(part)}")
        wanted = graphs.head_sha256 if part == "head" else graphs.tail_sha256
        if sha256_hex(files.part_codes) != wanted:
            raise BadRequest(f"{codes_file(part)} does not match the sha256 in manifest {manifest.id}")
    if files.full_model is not None and sha256_hex(files.full_model) != manifest.model_sha256:
        raise BadRequest(f"model.onnx does not match the sha256 in manifest {manifest.id}")


class BundleStore:
    """``<root>/splits/<split id>/{manifest.json,<part>.onnx}`` and ``<root>/models/<sha256>.onnx``."""

    def __init__(self, root: Path, part: Part) -> None:
        self.root = root
        self.part = part
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "models").mkdir(parents=True, exist_ok=True)

    def split_dir(self, split_id: str) -> Path:
        if not is_split_id(split_id):
            raise BadRequest(f"{split_id!r} is not a split id (64 lowercase hex characters)")
        return self.root / "splits" / split_id

    def part_path(self, split_id: str) -> Path:
        return self.split_dir(split_id) / f"{self.part}.onnx"

    def codes_path(self, split_id: str) -> Path:
        return self.split_dir(split_id) / codes_file(self.part)

    def full_model_path(self, model_sha256: str) -> Path:
        if not is_hex(model_sha256, 64):
            raise BadRequest(f"{model_sha256[:80]!r} is not a model sha256 (64 lowercase hex characters)")
        return self.root / "models" / f"{model_sha256}.onnx"

    def save(self, files: BundleFiles) -> None:
        check_bundle(files, self.part)
        manifest = files.manifest
        if files.full_model is not None:
            _atomic_write(self.full_model_path(manifest.model_sha256), files.full_model)
        directory = self.split_dir(manifest.id)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / f"{self.part}.onnx", files.part)
        if files.part_codes is not None:
            _atomic_write(directory / codes_file(self.part), files.part_codes)
        # The manifest goes last: a directory without one is an interrupted write and is ignored on restore.
        _atomic_write(directory / "manifest.json", manifest.to_json_bytes())

    def stored_manifests(self) -> list[SplitManifest]:
        """Complete bundles, oldest deploy first (each deploy rewrites its manifest), so the last is the default."""
        complete = []
        for directory in (self.root / "splits").iterdir():
            manifest_path = directory / "manifest.json"
            if manifest_path.is_file() and (directory / f"{self.part}.onnx").is_file():
                complete.append((manifest_path.stat().st_mtime_ns, directory.name, manifest_path))
        return [parse_manifest(path.read_bytes()) for _, _, path in sorted(complete)]

    def has_full_model(self, manifest: SplitManifest) -> bool:
        return self.full_model_path(manifest.model_sha256).is_file()


def _atomic_write(path: Path, data: bytes) -> None:
    with disk_space_for(path.parent, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def read_bundle_zip(data: bytes, part: Part) -> BundleFiles:
    """A zip holding manifest.json, <part>.onnx and optionally model.onnx and <part>_codes.onnx; members are read
    by name only."""
    what = "the bundle zip"
    if not data.startswith(b"PK"):
        raise BadRequest("the bundle is not a zip file: download one from GET /api/splits/{id}/bundle.zip")
    members = {info.filename: info for info in audit_zip(data, BUNDLE_LIMITS, BadRequest, what)}
    for required in ("manifest.json", f"{part}.onnx"):
        if required not in members:
            raise BadRequest(f"{what} has no {required} (it holds: {', '.join(sorted(members)) or 'nothing'})")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = parse_manifest(read_member(archive, members["manifest.json"], BadRequest, what))
        full = read_member(archive, members["model.onnx"], BadRequest, what) if "model.onnx" in members else None
        codes = codes_file(part)
        part_codes = read_member(archive, members[codes], BadRequest, what) if codes in members else None
        files = BundleFiles(
            manifest=manifest,
            part=read_member(archive, members[f"{part}.onnx"], BadRequest, what),
            full_model=full,
            part_codes=part_codes,
        )
    check_bundle(files, part)
    return files


def fetch_bundle(
    client: httpx.Client,
    splitter_url: str,
    split_id: str,
    part: Part,
    store: BundleStore | None = None,
    with_codes: bool = False,
) -> BundleFiles:
    """Pull a split's manifest, this side's half and the full model from the splitter (and, ``with_codes``, its half
    with the codes inside, where the split has one).

    The full model is skipped when ``store`` already holds it: many splits share one model, and on a thin robot
    link its tens of megabytes are most of a deploy's cost.
    """
    if not is_split_id(split_id):
        raise BadRequest(f"{split_id!r} is not a split id (64 lowercase hex characters)")
    base = splitter_url.rstrip("/")
    manifest = parse_manifest(_get(client, f"{base}/api/splits/{split_id}", split_id))
    part_bytes = _get(client, f"{base}/api/splits/{split_id}/{part}.onnx", split_id)
    full = None
    if store is None or not store.has_full_model(manifest):
        full = _get(client, f"{base}/api/models/{manifest.model_id}/model.onnx", split_id)
    codes = None
    if with_codes and manifest.code_graphs is not None:
        codes = _get(client, f"{base}/api/splits/{split_id}/{codes_file(part)}", split_id)
    files = BundleFiles(manifest=manifest, part=part_bytes, full_model=full, part_codes=codes)
    check_bundle(files, part)
    return files


def _get(client: httpx.Client, url: str, split_id: str) -> bytes:
    try:
        response = client.get(url)
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"the splitter did not answer in time ({url})") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"the splitter cannot be reached at {url}: {exc}") from exc
    if response.status_code == 404:
        raise NotFound(f"the splitter does not know split {split_id} ({url} answered 404)")
    if response.status_code != 200:
        raise peer_error("splitter", response.status_code, response.content)
    return response.content
