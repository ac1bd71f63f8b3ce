"""The splitter's calls to the robot and the edge: deploying splits and forwarding inference requests.

``SPLITTER_ROBOT_URL`` and ``SPLITTER_EDGE_URL`` may each list a fleet (comma-separated). A deploy goes to every
edge, then to every robot, and says how each went; it fails only when no edge or no robot took the split. Everything
else (inference, profiles, link probes, what is deployed) asks the first of each list.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError

from common.auth import bearer_header
from common.errors import BadGateway, SplitComputingError, UpstreamTimeout, UpstreamUnavailable
from common.observability import outgoing_trace_headers
from common.peer_errors import peer_error
from common.postprocess.answers import NO_OPTIONS, DetectionOptions
from common.profiling import LinkProbeResult, ProfileResult
from common.results import InferenceResult
from common.service_api import DeploymentInfo
from common.settings import service_urls
from model_splitter.records import Progress, no_progress


class PeerTokens(Protocol):
    robot_token: SecretStr | None
    edge_token: SecretStr | None


class MemberDeployment(BaseModel):
    """How deploying went on one robot or edge of the fleet."""

    side: str
    url: str
    deployment: DeploymentInfo | None = None
    error: str | None = None


class PeerDeployment(BaseModel):
    """What deploying a split did on each side (their POST /api/deploy answers): the first robot and edge that took
    it, and every member of the fleet."""

    edge: DeploymentInfo
    robot: DeploymentInfo
    members: list[MemberDeployment] = []


class FleetMember(BaseModel):
    url: str
    health: dict[str, Any] | None = Field(description="its /health; null when it did not answer")


Answer = TypeVar("Answer")
_DEPLOYMENT_LIST: TypeAdapter[list[DeploymentInfo]] = TypeAdapter(list[DeploymentInfo])

# The robot reads the image format from the bytes themselves.
RAW_IMAGE_TYPE = "application/octet-stream"


class Peers:
    def __init__(self, robot_url: str, edge_url: str, timeout_s: float, tokens: PeerTokens) -> None:
        self.fleet = {"robot": service_urls(robot_url), "edge": service_urls(edge_url)}
        self.urls = {side: urls[0] for side, urls in self.fleet.items()}
        self._headers = {"robot": bearer_header(tokens.robot_token), "edge": bearer_header(tokens.edge_token)}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s))

    def deploy(self, split_id: str, progress: Progress = no_progress) -> PeerDeployment:
        # The edges first: a robot must never send frames of a split no edge holds yet.
        members: list[MemberDeployment] = []
        for side, part in (("edge", "tail"), ("robot", "head")):
            taken: list[SplitComputingError] = []
            for url in self.fleet[side]:
                progress(f"the {side} loads the {part}" if len(self.fleet[side]) == 1 else f"{url} loads the {part}")
                try:
                    body = self._call(side, "POST", "/api/deploy", json={"split_id": split_id}, url=url)
                    info = self._answer(DeploymentInfo, body, side, url)
                except SplitComputingError as exc:
                    taken.append(exc)
                    members.append(MemberDeployment(side=side, url=url, error=exc.message))
                    continue
                members.append(MemberDeployment(side=side, url=url, deployment=info))
            if not any(m.deployment for m in members if m.side == side):
                raise taken[0]  # none took it: the first failure, as with a single robot and edge
        first = {m.side: m.deployment for m in reversed(members) if m.deployment is not None}
        return PeerDeployment(edge=first["edge"], robot=first["robot"], members=members)

    def fleet_health(self, side: str) -> list[FleetMember]:
        return [FleetMember(url=url, health=self.health(side, url)) for url in self.fleet[side]]

    def infer(
        self, image: bytes, mode: str | None, split_id: str | None, options: DetectionOptions = NO_OPTIONS
    ) -> InferenceResult:
        params = {key: value for key, value in (("mode", mode), ("split_id", split_id)) if value}
        params.update(options.query())
        body = self._call("robot", "POST", "/api/infer", content=image, params=params, content_type=RAW_IMAGE_TYPE)
        return self._answer(InferenceResult, body, "robot")

    def deployed(self, side: str) -> list[DeploymentInfo]:
        """The splits ``side`` holds (its GET /api/splits)."""
        body = self._call(side, "GET", "/api/splits")
        return self._answer(_DEPLOYMENT_LIST, body, side)

    def profile(self, side: str, split_id: str, image: bytes | None = None, runs: int = 10) -> ProfileResult:
        """``side`` times the full model of ``split_id`` on its own provider (POST /api/profile; cached there)."""
        payload: dict[str, Any] = {"split_id": split_id, "runs": runs}
        if image is not None:
            payload["image_base64"] = base64.b64encode(image).decode()
        return self._answer(ProfileResult, self._call(side, "POST", "/api/profile", json=payload), side)

    def probe_link(self, nbytes: int = 1_000_000, repeats: int = 3) -> LinkProbeResult:
        """The robot measures round trip and throughput to its edge (POST /api/probe-link)."""
        body = self._call("robot", "POST", "/api/probe-link", json={"bytes": nbytes, "repeats": repeats})
        return self._answer(LinkProbeResult, body, "robot")

    def health(self, side: str, url: str | None = None) -> dict[str, Any] | None:
        try:
            base = url or self.urls[side]
            response = self._client.get(f"{base}/health", timeout=3.0, headers=self._headers[side])
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def _call(
        self, side: str, method: str, path: str, content_type: str | None = None, url: str | None = None, **kwargs: Any
    ) -> Any:
        base = url or self.urls[side]
        url = f"{base}{path}"
        try:
            headers = dict(self._headers[side])
            if content_type is not None:
                headers["content-type"] = content_type
            headers.update(outgoing_trace_headers())
            response = self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the {side} at {base} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the {side} service at {base} cannot be reached: is it running?") from exc
        if response.status_code == 200:
            return response.json()
        raise peer_error(side, response.status_code, response.content)

    def _answer(
        self, shape: type[Answer] | TypeAdapter[Answer], body: Any, side: str, url: str | None = None
    ) -> Answer:
        """A 200 answer as the model it should be; anything else is the peer's fault, not the caller's (502)."""
        adapter = shape if isinstance(shape, TypeAdapter) else TypeAdapter(shape)
        try:
            return adapter.validate_python(body)
        except ValidationError as exc:
            base = url or self.urls[side]
            raise BadGateway(f"the {side} at {base} answered something else than expected: {exc}") from exc

    def close(self) -> None:
        self._client.close()
