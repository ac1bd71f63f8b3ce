"""The Open Inference Protocol (KServe v2) on the edge: any OIP client (``tritonclient``, KServe's) runs a tail.

A model is a deployed tail, named by its split id or by its readable name (``<model>-<split point>-<bits>b``,
``SplitManifest.readable_name``), version 1. Its inputs are the packed codes of the cut (``UINT8 <cut>.codes``,
``[batch, bytes]``, common/codes.py: what a robot with ``ROBOT_EDGE_PROTOCOL=oip`` sends, and what the Triton
repository's tail takes), or, for splits without codes (16/32 bits) and for any client that has them, the cut
tensors as float32; its outputs are the tail's. Requests and
answers in JSON tensors or the binary tensor data extension (``Inference-Header-Content-Length``,
``binary_data_size``, ``binary_data`` / ``binary_data_output``). Errors on these routes are the protocol's
``{"error": message}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.codes import CODES_SUFFIX, codes_name, codes_to_features, codes_width, has_codes
from common.deployments import Deployment, DeploymentSet
from common.errors import BadRequest, FrameMismatch, NotFound, NotReady, SplitComputingError
from common.manifest import SplitManifest
from common.oip_tensors import NUMERIC_TYPES, message, read_header, read_tensors, write_tensors
from common.postprocess.raw import DATATYPES, HEADER_LENGTH
from common.service_api import read_limited
from common.timing import StageTimer
from edge_inference.batcher import TailBatcher, Ticket, deadline_from
from edge_inference.pipeline import run_batched

SERVER_NAME = "splitbot-edge"
SERVER_VERSION = "1"
MODEL_VERSION = "1"
EXTENSIONS = ["binary_tensor_data"]
# the codes, or the cut tensors as floats
INPUT_TYPES = {"UINT8": NUMERIC_TYPES["UINT8"], "FP32": NUMERIC_TYPES["FP32"]}


def model_name(deployment: Deployment) -> str:
    return deployment.manifest.readable_name


def oip_router(
    deployments: DeploymentSet, reads: Guard, writes: Guard, max_body_bytes: int, batcher: TailBatcher
) -> APIRouter:
    """The protocol's routes. Its health routes are open (orchestrators probe them, as /health/live and
    /health/ready); metadata needs a reader's token where reads are protected, inference a writer's."""
    router = APIRouter(prefix="/v2", tags=["open inference protocol"])
    read = [Depends(reads)]

    def find(name: str, version: str | None) -> Deployment:
        if version is not None and version != MODEL_VERSION:
            raise NotFound(f"model {name!r} has only version {MODEL_VERSION}")
        for deployment in deployments.all():
            if name in (deployment.manifest.id, model_name(deployment)):
                return deployment
        held = ", ".join(model_name(d) for d in deployments.all()) or "none"
        raise NotFound(f"no model {name!r} here (by split id or name); deployed: {held}")

    @router.get("/health/live", summary="The server is up")
    async def live() -> Response:
        return JSONResponse({"live": True})

    @router.get("/health/ready", summary="Ready: at least one tail is loaded")
    async def ready() -> Response:
        return await protocol_errors(lambda: _ready(deployments))

    @router.get("", summary="Server metadata", dependencies=read)
    async def server() -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})

    @router.get(
        "/models/{name}", summary="Model metadata: a deployed tail's inputs (the cut) and outputs", dependencies=read
    )
    @router.get("/models/{name}/versions/{version}", summary="Model metadata of a version", dependencies=read)
    async def metadata(name: str, version: str | None = None) -> Response:
        return await protocol_errors(lambda: _metadata(find(name, version)))

    @router.get("/models/{name}/ready", summary="The model is loaded", dependencies=read)
    @router.get("/models/{name}/versions/{version}/ready", summary="The model version is loaded", dependencies=read)
    async def model_ready(name: str, version: str | None = None) -> Response:
        return await protocol_errors(lambda: _loaded(find(name, version)))

    @router.post(
        "/models/{name}/infer",
        summary="Run a tail on the cut's codes (or its float32 tensors)",
        dependencies=[Depends(writes)],
    )
    @router.post(
        "/models/{name}/versions/{version}/infer", summary="Run a tail version", dependencies=[Depends(writes)]
    )
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        async def answer() -> Response:
            deployment = find(name, version)
            deadline = deadline_from(request)
            body = await read_limited(request, max_body_bytes, "inference request")
            parsed = _parse_request(body, request.headers.get(HEADER_LENGTH.lower()))
            return await run_in_threadpool(_run, deployment, name, parsed, batcher, deadline)

        return await protocol_errors(answer)

    return router


async def protocol_errors(work: Callable[[], Awaitable[Response] | Response]) -> Response:
    """Our errors in the protocol's form: ``{"error": message}`` with the status of the error."""
    try:
        result = work()
        return await result if not isinstance(result, Response) else result
    except SplitComputingError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)


def _ready(deployments: DeploymentSet) -> Response:
    if not deployments.all():
        raise NotReady("no tail is deployed on this edge yet")
    return JSONResponse({"ready": True})


def _loaded(deployment: Deployment) -> Response:
    return JSONResponse({"name": model_name(deployment), "ready": True})


def _metadata(deployment: Deployment) -> Response:
    manifest = deployment.manifest
    return JSONResponse(
        {
            "name": model_name(deployment),
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": _inputs(manifest),
            "outputs": [
                {"name": s.name, "datatype": DATATYPES.get(s.dtype, "FP32"), "shape": [-1, *s.shape[1:]]}
                for s in manifest.outputs
            ],
            "parameters": {"split_id": manifest.id, "split_point": manifest.split_point},
        }
    )


def _inputs(manifest: SplitManifest) -> list[dict[str, Any]]:
    if has_codes(manifest):
        return [
            {"name": codes_name(s.name), "datatype": "UINT8", "shape": [-1, codes_width(manifest, s)]}
            for s in manifest.cut
        ]
    return [{"name": s.name, "datatype": "FP32", "shape": [-1, *s.shape[1:]]} for s in manifest.cut]


def _parse_request(body: bytes, header_length: str | None) -> dict[str, Any]:
    """The request's JSON with every input's data as a numpy array (under "arrays")."""
    request, offset = read_header(body, header_length, "inference request")
    if not isinstance(request.get("inputs"), list):
        raise BadRequest('an inference request is a JSON object with "inputs": [{"name", "shape", "datatype", ...}]')
    request["arrays"] = read_tensors(request["inputs"], body, offset, INPUT_TYPES, "inference request")
    return request


def _run(
    deployment: Deployment, name: str, request: dict[str, Any], batcher: TailBatcher, deadline: float | None
) -> Response:
    manifest = deployment.manifest
    with batcher.incoming(manifest.id) as ticket:
        outputs = _run_tail(deployment, name, request["arrays"], batcher, deadline, ticket)
    names = [spec.name for spec in manifest.outputs] or list(deployment.part.output_names)
    return _response(name, request, dict(zip(names, outputs, strict=False)))


def _run_tail(
    deployment: Deployment,
    name: str,
    arrays: dict[str, np.ndarray],
    batcher: TailBatcher,
    deadline: float | None,
    ticket: Ticket,
) -> list[np.ndarray]:
    manifest = deployment.manifest
    if arrays and all(key.endswith(CODES_SUFFIX) for key in arrays) and has_codes(manifest):
        arrays = codes_to_features(manifest, arrays)
    expected = {spec.name: spec for spec in manifest.cut}
    if set(arrays) != set(expected):
        codes = sorted(codes_name(key) for key in expected) if has_codes(manifest) else []
        takes = f"{codes} (UINT8) or {sorted(expected)} (FP32)" if codes else f"{sorted(expected)} (FP32)"
        raise FrameMismatch(f"model {name!r} takes the inputs {takes}, the request gives {sorted(arrays)}")
    batches = {array.shape[0] if array.ndim else -1 for array in arrays.values()}
    for input_name, array in arrays.items():
        if list(array.shape[1:]) != expected[input_name].shape[1:] or len(batches) != 1:
            raise FrameMismatch(
                f"input {input_name!r} has shape {list(array.shape)}; the model takes [batch, "
                + ", ".join(str(d) for d in expected[input_name].shape[1:])
                + "], one batch for all inputs"
            )
    feeds = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    return run_batched(batcher, deployment, feeds, deadline, StageTimer("edge"), ticket).outputs


def _response(name: str, request: dict[str, Any], outputs: dict[str, np.ndarray]) -> Response:
    wanted = request.get("outputs")
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    binary: dict[str, bool] = {}
    if isinstance(wanted, list) and wanted:
        for entry in wanted:
            output = entry.get("name") if isinstance(entry, dict) else None
            if output not in outputs:
                raise BadRequest(f"no output {output!r}; the model's outputs are {sorted(outputs)}")
            binary[output] = bool((entry.get("parameters") or {}).get("binary_data", binary_default))
    else:
        binary = {output: binary_default for output in outputs}
    entries, data = write_tensors({output: outputs[output] for output in binary}, binary)
    header: dict[str, Any] = {"model_name": name, "model_version": MODEL_VERSION, "outputs": entries}
    if isinstance(request.get("id"), str):
        header["id"] = request["id"]
    body, headers = message(header, data)
    return Response(body, media_type=headers.pop("content-type"), headers=headers)
