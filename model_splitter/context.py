"""Everything the splitter's routes need, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from common.auth import Guard, SessionSigner, read_guard, token_guard
from model_splitter.services.peers import Peers
from model_splitter.services.reference import ReferenceRunner
from model_splitter.settings import SplitterSettings
from model_splitter.store.jobs import JobTable
from model_splitter.store.registry import Registry

SIGN_IN_HINT = "; in the web UI, sign in at /login"


@dataclass
class SplitterContext:
    settings: SplitterSettings
    registry: Registry
    peers: Peers
    reference: ReferenceRunner
    write_guard: Guard
    read_guard: Guard
    sessions: SessionSigner | None
    jobs: JobTable

    @classmethod
    def build(cls, settings: SplitterSettings) -> SplitterContext:
        registry = Registry(settings.data_dir)
        sessions = SessionSigner(settings.token, settings.session_hours * 3600) if settings.token else None
        return cls(
            settings=settings,
            registry=registry,
            peers=Peers(settings.robot_url, settings.edge_url, settings.request_timeout_s, settings),
            reference=ReferenceRunner(registry),
            write_guard=token_guard(settings.token, "SPLITTER_TOKEN", SIGN_IN_HINT, sessions),
            read_guard=read_guard(settings.token, "SPLITTER_TOKEN", settings.protect_reads, SIGN_IN_HINT, sessions),
            sessions=sessions,
            jobs=JobTable(),
        )
