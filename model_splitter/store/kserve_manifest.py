"""A KServe ``InferenceService`` for a split's tail: KServe's Triton runtime over the exported model repository.

The repository is ``GET /api/splits/{id}/triton.zip`` unzipped where the cluster reads models from
(``storage_uri``: an ``s3://``, ``gs://``, ``pvc://`` or ``https://`` location holding ``<name>/config.pbtxt`` and
``<name>/1/model.onnx``). Robots then speak the Open Inference Protocol to it (``ROBOT_EDGE_PROTOCOL=oip``,
``ROBOT_EDGE_URL`` the service's URL); the model's name there is the split's readable name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common.errors import InvalidArgument
from common.manifest import SplitManifest

API_VERSION = "serving.kserve.io/v1beta1"
TRITON_RUNTIME = "kserve-tritonserver"
CONTAINER_NAME = "kserve-container"  # the name KServe gives the predictor's container
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hdfs://", "webhdfs://", "oci://")
MAX_NAME = 63  # a DNS-1035 label: the service's host name is built from it


@dataclass(frozen=True)
class KServeOptions:
    storage_uri: str
    gpu: bool = True
    min_replicas: int = 1
    max_replicas: int = 1

    def checked(self) -> KServeOptions:
        if not self.storage_uri.startswith(STORAGE_SCHEMES):
            raise InvalidArgument(
                f"storage_uri must be where the unzipped triton.zip lies, one of {', '.join(STORAGE_SCHEMES)}..., "
                f"got {self.storage_uri[:100]!r}"
            )
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise InvalidArgument(
                f"replicas must satisfy 0 <= min_replicas <= max_replicas and max_replicas >= 1, got "
                f"{self.min_replicas} and {self.max_replicas}"
            )
        return self


def service_name(manifest: SplitManifest) -> str:
    """The readable name as a DNS label: lower case letters, digits and '-', starting with a letter."""
    name = re.sub(r"[^a-z0-9]+", "-", manifest.readable_name.lower()).strip("-")
    name = name if name[:1].isalpha() else f"split-{name}"
    return name[:MAX_NAME].rstrip("-")


def inference_service(manifest: SplitManifest, options: KServeOptions) -> dict[str, Any]:
    options = options.checked()
    model: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "modelFormat": {"name": "triton"},
        "runtime": TRITON_RUNTIME,
        "storageUri": options.storage_uri,
    }
    if options.gpu:
        model["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": service_name(manifest),
            "annotations": {"splitbot/split-id": manifest.id, "splitbot/model-name": manifest.readable_name},
        },
        "spec": {
            "predictor": {
                "minReplicas": options.min_replicas,
                "maxReplicas": options.max_replicas,
                "model": model,
            }
        },
    }


def inference_service_json(manifest: SplitManifest, options: KServeOptions) -> str:
    """As ``kubectl apply -f`` takes it (JSON is YAML too)."""
    return json.dumps(inference_service(manifest, options), indent=2) + "\n"
