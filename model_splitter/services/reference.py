"""The unsplit float reference: the whole registered model run on the splitter, to compare answers against."""

from __future__ import annotations

import threading

import numpy as np

from common.imaging import image_batch
from common.manifest import SplitManifest
from common.postprocess import Prediction, top_k
from common.sessions import LoadedSession, SessionOptions, create_session
from model_splitter.store.registry import Registry

CPU_ONLY = SessionOptions(providers=("cpu",), allow_spinning=False)


class ReferenceRunner:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._sessions: dict[str, LoadedSession] = {}
        # Splits are immutable, so a manifest read once (and hash-checked once) serves every later request.
        self._manifests: dict[str, SplitManifest] = {}
        self._lock = threading.Lock()

    def _session(self, model_id: str) -> LoadedSession:
        with self._lock:
            session = self._sessions.get(model_id)
            if session is None:
                session = create_session(str(self._registry.model_onnx_path(model_id)), CPU_ONLY)
                self._sessions[model_id] = session
            return session

    def _manifest(self, split_id: str) -> SplitManifest:
        with self._lock:
            manifest = self._manifests.get(split_id)
        if manifest is None:
            manifest = self._registry.get_split(split_id)
            with self._lock:
                self._manifests[split_id] = manifest
        return manifest

    def predict(self, split_id: str, image: bytes) -> list[Prediction]:
        manifest = self._manifest(split_id)
        session = self._session(manifest.model_id)
        batch = image_batch(image, manifest.preprocessing)
        output = session.run({session.input_names[0]: batch})[0]
        return top_k(np.asarray(output), manifest.postprocessing)[0]

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._sessions.pop(model_id, None)
            self._manifests = {key: m for key, m in self._manifests.items() if m.model_id != model_id}
