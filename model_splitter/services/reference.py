"""The unsplit float reference: the whole registered model run on the splitter, to compare answers against."""

from __future__ import annotations

import threading

from common.imaging import decode_image, geometry_of, preprocess, release
from common.manifest import SplitManifest
from common.postprocess import Answer, DetectionOptions, answer_batch
from common.postprocess.placement import place
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

    def answer(self, split_id: str, image: bytes, options: DetectionOptions) -> Answer:
        """The whole float model's answer for ``image``, in the image's pixels."""
        manifest = self._manifest(split_id)
        session = self._session(manifest.model_id)
        spec = manifest.preprocessing
        decoded = decode_image(image, spec.color, spec.resize_shorter_to)
        try:
            batch = preprocess(decoded, spec)
            geometry = geometry_of(decoded.size, spec)
        finally:
            release(decoded)
        (found,) = answer_batch(session.run({session.input_names[0]: batch}), manifest, 1, options)
        return place(found, geometry, manifest.postprocessing.labels)

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._sessions.pop(model_id, None)
            self._manifests = {key: m for key, m in self._manifests.items() if m.model_id != model_id}
