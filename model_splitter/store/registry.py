"""The splitter's registry on disk: models and splits, content-addressed, written atomically.

Layout under the data directory::

    models/<model id>/model.onnx  model.json  labels.json  [calibration.json]
    splits/<split id>/head.onnx  tail.onnx  manifest.json
    staging/<random>/            directories being written; renamed into place when complete

A model or split directory appears in one ``rename``, so a reader (or a restart after a crash) sees either the
whole entry or nothing. Ids are hashes of the content, so two uploads of the same bytes land on the same entry
and two different uploads can never overwrite each other. The one mutable file is a model's ``calibration.json``
(the latest calibration): it is written to staging and moved over the old one with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from common.errors import NotFound
from common.manifest import SplitManifest, is_hex, parse_manifest
from common.storage import disk_space_for
from model_splitter.records import CalibrationResult, ModelRecord

MODEL_ID_HEX_LENGTH = 16
# A split's head with the quantizer inside (codes out) and tail with the dequantizer inside (codes in).
HEAD_CODES_FILE = "head_codes.onnx"
TAIL_CODES_FILE = "tail_codes.onnx"


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("models", "splits", "staging"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._clear_staging()

    def _clear_staging(self) -> None:
        # Anything left in staging belongs to a write that never finished (a crash or a kill); it was never visible.
        for leftover in (self.root / "staging").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    # --- models -------------------------------------------------------------------------------------------------
    def model_dir(self, model_id: str) -> Path:
        if not is_hex(model_id, MODEL_ID_HEX_LENGTH):
            raise NotFound(f"no model {model_id!r}: model ids are {MODEL_ID_HEX_LENGTH} hex characters")
        return self.root / "models" / model_id

    def has_model(self, model_id: str) -> bool:
        return (self.model_dir(model_id) / "model.json").is_file()

    def save_model(self, record: ModelRecord, onnx_bytes: bytes, labels: list[str] | None) -> ModelRecord:
        files = {
            "model.onnx": onnx_bytes,
            "model.json": record.model_dump_json(indent=2).encode(),
            "labels.json": json.dumps(labels).encode(),
        }
        if not self._publish(self.model_dir(record.id), files):
            return self.get_model(record.id)
        return record

    def get_model(self, model_id: str) -> ModelRecord:
        path = self.model_dir(model_id) / "model.json"
        if not path.is_file():
            raise NotFound(f"no model {model_id} in the registry")
        return ModelRecord.model_validate_json(path.read_bytes())

    def model_onnx_path(self, model_id: str) -> Path:
        self.get_model(model_id)
        return self.model_dir(model_id) / "model.onnx"

    def model_labels(self, model_id: str) -> list[str] | None:
        self.get_model(model_id)  # 404 for a model that is not here
        labels: list[str] | None = json.loads((self.model_dir(model_id) / "labels.json").read_bytes())
        return labels

    def list_models(self) -> list[ModelRecord]:
        records = []
        for directory in (self.root / "models").iterdir():
            if (directory / "model.json").is_file():
                records.append(ModelRecord.model_validate_json((directory / "model.json").read_bytes()))
        return sorted(records, key=lambda r: r.created_at)

    def delete_model(self, model_id: str) -> list[str]:
        """Remove a model and the splits cut from it; returns the removed split ids."""
        self.get_model(model_id)
        removed = [m.id for m in self.list_splits() if m.model_id == model_id]
        for split_id in removed:
            self._remove(self.split_dir(split_id))
        self._remove(self.model_dir(model_id))
        return removed

    def save_calibration(self, result: CalibrationResult) -> CalibrationResult:
        """Store (or replace) the model's calibration atomically: a reader sees the old file or the new one."""
        self.get_model(result.model_id)
        staging = self.root / "staging" / uuid.uuid4().hex
        data = result.model_dump_json(indent=1).encode()
        try:
            with disk_space_for(self.root, len(data)):
                staging.mkdir()
                with open(staging / "calibration.json", "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            try:
                os.replace(staging / "calibration.json", self.model_dir(result.model_id) / "calibration.json")
            except FileNotFoundError:
                raise NotFound(f"model {result.model_id} was deleted while it was being calibrated") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return result

    def get_calibration(self, model_id: str) -> CalibrationResult | None:
        """The model's stored calibration, or None if it was never calibrated (NotFound if there is no model)."""
        self.get_model(model_id)
        path = self.model_dir(model_id) / "calibration.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return CalibrationResult.model_validate_json(data)

    # --- splits -------------------------------------------------------------------------------------------------
    def split_dir(self, split_id: str) -> Path:
        if not is_hex(split_id, 64):
            raise NotFound(f"no split {split_id!r}: split ids are 64 hex characters")
        return self.root / "splits" / split_id

    def save_split(
        self, manifest: SplitManifest, head: bytes, tail: bytes, extra: dict[str, bytes] | None = None
    ) -> SplitManifest:
        """``extra``: the head and tail with codes inside (HEAD_CODES_FILE, TAIL_CODES_FILE), where there are."""
        files = {"head.onnx": head, "tail.onnx": tail, **(extra or {}), "manifest.json": manifest.to_json_bytes()}
        self._publish(self.split_dir(manifest.id), files)
        return manifest

    def get_split(self, split_id: str) -> SplitManifest:
        path = self.split_dir(split_id) / "manifest.json"
        if not path.is_file():
            raise NotFound(f"no split {split_id} in the registry")
        return parse_manifest(path.read_bytes())

    def split_file(self, split_id: str, name: str) -> Path:
        self.get_split(split_id)
        return self.split_dir(split_id) / name

    def code_graph_file(self, split_id: str, name: str) -> Path:
        """HEAD_CODES_FILE or TAIL_CODES_FILE of a split; NotFound, saying why, where the split has none."""
        if self.get_split(split_id).code_graphs is None:
            raise NotFound(
                f"split {split_id} has no {name}: it sends floats (16 or 32 bits), its model is older than ONNX "
                "opset 13, or it was made before splits carried them (create it again)"
            )
        return self.split_dir(split_id) / name

    def list_splits(self) -> list[SplitManifest]:
        manifests = []
        for directory in (self.root / "splits").iterdir():
            if (directory / "manifest.json").is_file():
                manifests.append(parse_manifest((directory / "manifest.json").read_bytes()))
        return manifests

    # --- atomic publication ---------------------------------------------------------------------------------------
    def _publish(self, target: Path, files: dict[str, bytes]) -> bool:
        """Write ``files`` into a fresh staging directory, then rename it to ``target``; False if it existed."""
        if target.exists():
            return False
        staging = self.root / "staging" / uuid.uuid4().hex
        try:
            with disk_space_for(self.root, sum(len(data) for data in files.values())):
                staging.mkdir()
                for name, data in files.items():
                    with open(staging / name, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
            try:
                os.rename(staging, target)
            except OSError:
                if target.exists():  # another request published the same content first; theirs is identical
                    return False
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _remove(self, target: Path) -> None:
        if not target.exists():
            return
        doomed = self.root / "staging" / f"deleted-{uuid.uuid4().hex}"
        os.rename(target, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
