"""The splitter's calls to the robot and the edge: deploying splits and forwarding inference requests."""

from __future__ import annotations

import base64
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from common.auth import bearer_header
from common.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    SplitComputingError,
    UnprocessableModel,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from common.observability import REQUEST_ID_HEADER, request_id_var
from common.profiling import LinkProbeResult, ProfileResult
from common.results import InferenceResult


class PeerTokens(Protocol):
    robot_token: SecretStr | None
    edge_token: SecretStr | None


_PEER_ERRORS: dict[int, type[SplitComputingError]] = {
    400: BadRequest,
    401: BadGateway,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: UnprocessableModel,
}

# The robot reads the image format from the bytes themselves.
RAW_IMAGE_TYPE = "application/octet-stream"


class Peers:
    def __init__(self, robot_url: str, edge_url: str, timeout_s: float, tokens: PeerTokens) -> None:
        self.urls = {"robot": robot_url.rstrip("/"), "edge": edge_url.rstrip("/")}
        self._headers = {"robot": bearer_header(tokens.robot_token), "edge": bearer_header(tokens.edge_token)}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s))

    def deploy(self, split_id: str) -> dict[str, Any]:
        # The edge first: a robot must never send frames of a split its edge does not hold yet.
        edge = self._call("edge", "POST", "/api/deploy", json={"split_id": split_id})
        robot = self._call("robot", "POST", "/api/deploy", json={"split_id": split_id})
        return {"edge": edge, "robot": robot}

    def infer(self, image: bytes, mode: str | None, split_id: str | None) -> InferenceResult:
        params = {key: value for key, value in (("mode", mode), ("split_id", split_id)) if value}
        body = self._call("robot", "POST", "/api/infer", content=image, params=params, content_type=RAW_IMAGE_TYPE)
        return InferenceResult.model_validate(body)

    def deployed(self, side: str) -> list[dict[str, Any]]:
        """The splits ``side`` holds (its GET /api/splits)."""
        body = self._call(side, "GET", "/api/splits")
        return list(body) if isinstance(body, list) else []

    def profile(self, side: str, split_id: str, image: bytes | None = None, runs: int = 10) -> ProfileResult:
        """``side`` times the full model of ``split_id`` on its own provider (POST /api/profile; cached there)."""
        payload: dict[str, Any] = {"split_id": split_id, "runs": runs}
        if image is not None:
            payload["image_base64"] = base64.b64encode(image).decode()
        return ProfileResult.model_validate(self._call(side, "POST", "/api/profile", json=payload))

    def probe_link(self, nbytes: int = 1_000_000, repeats: int = 3) -> LinkProbeResult:
        """The robot measures round trip and throughput to its edge (POST /api/probe-link)."""
        body = self._call("robot", "POST", "/api/probe-link", json={"bytes": nbytes, "repeats": repeats})
        return LinkProbeResult.model_validate(body)

    def health(self, side: str) -> dict[str, Any] | None:
        try:
            response = self._client.get(f"{self.urls[side]}/health", timeout=3.0, headers=self._headers[side])
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def _call(self, side: str, method: str, path: str, content_type: str | None = None, **kwargs: Any) -> Any:
        url = f"{self.urls[side]}{path}"
        try:
            headers = dict(self._headers[side])
            if content_type is not None:
                headers["content-type"] = content_type
            request_id = request_id_var.get()
            if request_id != "-":
                headers[REQUEST_ID_HEADER] = request_id
            response = self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the {side} at {self.urls[side]} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"the {side} service at {self.urls[side]} cannot be reached: is it running?"
            ) from exc
        if response.status_code == 200:
            return response.json()
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text[:300]
        error_class = _PEER_ERRORS.get(response.status_code)
        if error_class is not None:
            return_error = error_class(f"the {side} refused: {detail}")
        elif response.status_code in (503, 504):
            return_error = UpstreamUnavailable(f"the {side} could not complete the request: {detail}")
        else:
            return_error = BadGateway(f"the {side} answered {response.status_code}: {detail}")
        raise return_error

    def close(self) -> None:
        self._client.close()
