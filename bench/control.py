"""The splitter's REST API as the benchmark needs it: register, list points, cut, deploy, download halves."""

from __future__ import annotations

import httpx

from bench.schema import PointInfo
from common.manifest import SplitManifest, parse_manifest

# Registering resnet50 exports it through torch; cutting verifies head+tail against the whole model.
SPLITTER_TIMEOUT_S = 900.0


class SplitterControl:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=SPLITTER_TIMEOUT_S)

    def __enter__(self) -> SplitterControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def register(self, arch: str, input_shape: str | None = None) -> tuple[str, list[PointInfo]]:
        data = {"arch": arch} if input_shape is None else {"arch": arch, "input_shape": input_shape}
        model = self.client.post("/api/models", data=data)
        model.raise_for_status()
        model_id: str = model.json()["id"]
        points = self.client.get(f"/api/models/{model_id}/split-points")
        points.raise_for_status()
        return model_id, [PointInfo.model_validate(p) for p in points.json()]

    def create_split(self, model_id: str, point: str, bits: int) -> str:
        split = self.client.post(f"/api/models/{model_id}/splits", json={"split_point": point, "bits": bits})
        split.raise_for_status()
        split_id: str = split.json()["id"]
        return split_id

    def deploy(self, split_id: str) -> None:
        """Edge first, then robot (the splitter's own order); both pull from the splitter."""
        self.client.post(f"/api/splits/{split_id}/deploy").raise_for_status()

    def manifest(self, split_id: str) -> SplitManifest:
        response = self.client.get(f"/api/splits/{split_id}")
        response.raise_for_status()
        return parse_manifest(response.content)

    def halves(self, split_id: str) -> tuple[bytes, bytes]:
        head = self.client.get(f"/api/splits/{split_id}/head.onnx")
        head.raise_for_status()
        tail = self.client.get(f"/api/splits/{split_id}/tail.onnx")
        tail.raise_for_status()
        return head.content, tail.content
