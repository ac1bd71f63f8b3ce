"""The splits one service holds, with their ONNX Runtime sessions created once and reused for every request."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from common.bundles import BundleFiles, BundleStore, Part
from common.errors import NotDeployed, UnknownSplit
from common.manifest import SplitManifest
from common.sessions import LoadedSession, SessionOptions, create_session

logger = logging.getLogger(__name__)


@dataclass
class Deployment:
    manifest: SplitManifest
    part: LoadedSession
    full: LoadedSession | None
    codes: LoadedSession | None = None  # the half with the codes inside, where this side quantizes in the graph


class DeploymentSet:
    """Every split this side holds, keyed by split id; the most recently deployed one is the default."""

    def __init__(self, store: BundleStore, options: SessionOptions, with_codes: bool = False) -> None:
        """``with_codes``: also load each split's half with the codes inside (where it has one)."""
        self._store = store
        self._options = options
        self.with_codes = with_codes
        self._lock = threading.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._full_sessions: dict[str, LoadedSession] = {}
        self.active_id: str | None = None

    @property
    def store(self) -> BundleStore:
        return self._store

    @property
    def part(self) -> Part:
        return self._store.part

    def install(self, files: BundleFiles) -> Deployment:
        self._store.save(files)
        return self._load(files.manifest)

    def restore(self) -> None:
        """Load every bundle stored on disk, so a restarted service answers for the splits it held."""
        for manifest in self._store.stored_manifests():
            try:
                self._load(manifest)
            except Exception:  # one damaged bundle must not keep the service from serving the others
                logger.exception("could not restore split %s", manifest.id)

    def _load(self, manifest: SplitManifest) -> Deployment:
        part_shapes = _input_shapes(manifest) if self._store.part == "head" else _cut_shapes(manifest)
        part_session = create_session(str(self._store.part_path(manifest.id)), self._options, part_shapes)
        full = self._full_session(manifest)
        codes = None
        if self.with_codes and self._store.codes_path(manifest.id).is_file():
            codes = create_session(str(self._store.codes_path(manifest.id)), self._options, part_shapes)
        deployment = Deployment(manifest=manifest, part=part_session, full=full, codes=codes)
        with self._lock:
            self._deployments[manifest.id] = deployment
            self.active_id = manifest.id
        return deployment

    def _full_session(self, manifest: SplitManifest) -> LoadedSession | None:
        if not self._store.has_full_model(manifest):
            return None
        with self._lock:
            cached = self._full_sessions.get(manifest.model_sha256)
        if cached is not None:
            return cached
        full_path = str(self._store.full_model_path(manifest.model_sha256))
        session = create_session(full_path, self._options, _input_shapes(manifest))
        with self._lock:
            self._full_sessions[manifest.model_sha256] = session
        return session

    def get(self, split_id: str | None) -> Deployment:
        with self._lock:
            if split_id is None:
                if self.active_id is None:
                    raise NotDeployed("no split is deployed here yet: deploy one with POST /api/deploy")
                split_id = self.active_id
            deployment = self._deployments.get(split_id)
        if deployment is None:
            raise UnknownSplit(
                f"split {split_id} is not deployed here; deploy it first (POST /api/deploy with its split_id)"
            )
        return deployment

    def all(self) -> list[Deployment]:
        with self._lock:
            return list(self._deployments.values())


def _input_shapes(manifest: SplitManifest) -> dict[str, list[int]]:
    """The shape a split is served at (batch 1): what the full model and the head take."""
    return {manifest.input.name: manifest.input.shape}


def _cut_shapes(manifest: SplitManifest) -> dict[str, list[int]]:
    """The cut tensors the tail takes, at batch 1."""
    return {spec.name: spec.shape for spec in manifest.cut}
