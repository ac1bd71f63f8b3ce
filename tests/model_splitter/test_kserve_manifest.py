"""The KServe InferenceService export: what KServe's own SDK model classes build for the Triton runtime.

The SDK is asked in a child process: importing ``kserve`` registers its own copy of the Open Inference Protocol's
protobuf messages (``inference.*``), which collides with tritonclient's in one process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.errors import InvalidArgument
from model_splitter.store.kserve_manifest import KServeOptions, inference_service, inference_service_json
from tests.support import TinySplit

SDK_BUILD = """
import json, sys
from kserve import (ApiClient, V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1ModelFormat,
    V1beta1ModelSpec, V1beta1PredictorSpec, constants)
from kubernetes.client import V1ObjectMeta, V1ResourceRequirements
a = json.loads(sys.argv[1])
service = V1beta1InferenceService(
    api_version=constants.KSERVE_V1BETA1,
    kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=V1ObjectMeta(name=a["name"], annotations=a["annotations"]),
    spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(
        min_replicas=a["min"], max_replicas=a["max"],
        model=V1beta1ModelSpec(
            name="kserve-container",
            model_format=V1beta1ModelFormat(name="triton"),
            runtime="kserve-tritonserver",
            storage_uri=a["storage_uri"],
            resources=V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}) if a["gpu"] else None,
        ),
    )),
)
print(json.dumps(ApiClient().sanitize_for_serialization(service)))
"""


def sdk_service(name: str, annotations: dict[str, str], storage_uri: str, gpu: bool) -> object:
    arguments = {"name": name, "annotations": annotations, "storage_uri": storage_uri, "gpu": gpu, "min": 1, "max": 3}
    built = subprocess.run(
        [sys.executable, "-c", SDK_BUILD, json.dumps(arguments)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return json.loads(built.stdout)


@pytest.mark.parametrize("gpu", [True, False])
def test_the_service_is_what_the_kserve_sdk_builds(tiny_split: TinySplit, gpu: bool) -> None:
    manifest = tiny_split.manifest
    options = KServeOptions("s3://models/tiny", gpu=gpu, min_replicas=1, max_replicas=3)
    ours = json.loads(inference_service_json(manifest, options))
    name = ours["metadata"]["name"]
    assert name == f"tiny-block-{manifest.quantization.bits}b"
    annotations = {"splitbot/split-id": manifest.id, "splitbot/model-name": manifest.readable_name}
    assert ours == sdk_service(name, annotations, "s3://models/tiny", gpu)


def test_names_and_options_kubernetes_would_refuse_are_refused(tiny_split: TinySplit) -> None:
    odd = tiny_split.manifest.model_copy(update={"model_name": "9 Odd_Model.v2"})
    name = inference_service(odd, KServeOptions("pvc://models/x"))["metadata"]["name"]
    assert name.startswith("split-9-odd-model-v2-") and len(name) <= 63
    with pytest.raises(InvalidArgument, match="storage_uri"):
        inference_service(odd, KServeOptions("/local/path"))
    with pytest.raises(InvalidArgument, match="replicas"):
        inference_service(odd, KServeOptions("s3://m", min_replicas=3, max_replicas=2))
