"""One inference on the robot, in any of the three plans: split, all-robot, all-edge."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import numpy as np

from common.deployments import Deployment, DeploymentSet
from common.errors import BadGateway, InvalidArgument, InvalidImage, NotDeployed, UpstreamTimeout, UpstreamUnavailable
from common.imaging import Geometry, decode_image, geometry_of, image_size, preprocess, release
from common.manifest import is_hex
from common.observability import request_id_var
from common.postprocess import Answer, DetectionOptions, answer_batch
from common.postprocess.answers import NO_OPTIONS
from common.postprocess.placement import place
from common.results import MODES, InferenceResult, Mode, Providers, WireBytes
from common.tensor_records import encode_features, image_record
from common.timing import StageTimer
from common.wire import encode_frame
from robot_inference.edge_client import EdgeClient, EdgeReply

IMAGE_TENSOR_NAME = "image"
logger = logging.getLogger(__name__)


def parse_mode(text: str | None) -> Mode:
    if text is None or text == "":
        return "split"
    for mode in MODES:
        if text == mode:
            return mode
    raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {text!r}")


def frame_request_id() -> str:
    """The caller's request id when the frame can carry it (16 bytes as 32 hex digits), else a fresh one."""
    current = request_id_var.get()
    if is_hex(current, 32):
        return current
    fresh = uuid.uuid4().hex
    # Logged under the caller's id: the line that links it to the id the edge's log lines carry.
    logger.info("request id %r does not fit in a frame; the edge sees it as %s", current[:64], fresh)
    request_id_var.set(fresh)
    return fresh


@dataclass(frozen=True)
class _Request:
    image: bytes
    options: DetectionOptions


@dataclass(frozen=True)
class _Call:
    """One request as it goes through the pipeline: what was asked, its id, its timings."""

    request: _Request
    request_id: str
    timer: StageTimer


@dataclass(frozen=True)
class _Pixels:
    """The preprocessed batch and where the photo's pixels went in it."""

    batch: np.ndarray
    geometry: Geometry


@dataclass(frozen=True)
class _Sizes:
    sent: int
    features: int
    image: int


class RobotPipeline:
    def __init__(self, deployments: DeploymentSet, edge: EdgeClient, fallback_to_robot: bool = False) -> None:
        self.deployments = deployments
        self.edge = edge
        self.fallback_to_robot = fallback_to_robot

    def infer(
        self, image: bytes, mode: Mode, split_id: str | None = None, options: DetectionOptions = NO_OPTIONS
    ) -> InferenceResult:
        deployment = self.deployments.get(split_id)
        request = _Request(image, options)
        if mode == "all-robot" or not self.fallback_to_robot or deployment.full is None:
            return self._infer(deployment, request, mode)
        try:
            return self._infer(deployment, request, mode)
        except (UpstreamUnavailable, UpstreamTimeout, BadGateway) as exc:
            logger.warning("edge failed (%s); answering on the robot", exc.message)
            result = self._infer(deployment, request, "all-robot")
            return result.model_copy(update={"fallback_reason": f"{mode} failed, answered on the robot: {exc.message}"})

    def _infer(self, deployment: Deployment, request: _Request, mode: Mode) -> InferenceResult:
        request_id = frame_request_id()
        timer = StageTimer("robot")
        if mode == "all-edge":
            return self._all_edge(deployment, request, request_id, timer)
        spec = deployment.manifest.preprocessing
        with timer.stage("decode"):
            decoded = decode_image(request.image, spec.color, spec.resize_shorter_to)
        with timer.stage("preprocess"):
            batch = preprocess(decoded, spec)
            geometry = geometry_of(decoded.size, spec)
            release(decoded)
        call, pixels = _Call(request, request_id, timer), _Pixels(batch, geometry)
        if mode == "all-robot":
            return self._all_robot(deployment, call, pixels)
        return self._split(deployment, call, pixels)

    def _split(self, deployment: Deployment, call: _Call, pixels: _Pixels) -> InferenceResult:
        manifest = deployment.manifest
        request, request_id, timer, batch = call.request, call.request_id, call.timer, pixels.batch
        with timer.stage("head"):
            features = deployment.part.run({deployment.part.input_names[0]: batch})
        with timer.stage("quantize"):
            frame = encode_frame(manifest.id, encode_features(manifest, features), request_id=request_id)
        reply = self.edge.infer(frame, request_id, request.options)
        feature_bytes = sum(int(np.asarray(t).size) * 4 for t in features)
        sizes = _Sizes(len(frame), feature_bytes, len(request.image))
        return self._merge(deployment, "split", reply, pixels.geometry, timer, sizes, request_id)

    def _all_edge(
        self, deployment: Deployment, request: _Request, request_id: str, timer: StageTimer
    ) -> InferenceResult:
        manifest = deployment.manifest
        image = request.image
        if not image:  # the other plans say so when decoding; a zero-length tensor would be refused less clearly
            raise InvalidImage("the image is empty: send a JPEG, PNG or WebP file")
        with timer.stage("encode"):
            geometry = geometry_of(image_size(image), manifest.preprocessing)
            frame = encode_frame(manifest.id, [image_record(IMAGE_TENSOR_NAME, image)], request_id=request_id)
        reply = self.edge.infer(frame, request_id, request.options)
        feature_bytes = sum(spec.elements * 4 for spec in manifest.cut)
        sizes = _Sizes(len(frame), feature_bytes, len(image))
        return self._merge(deployment, "all-edge", reply, geometry, timer, sizes, request_id)

    def _all_robot(self, deployment: Deployment, call: _Call, pixels: _Pixels) -> InferenceResult:
        manifest = deployment.manifest
        request, request_id, timer = call.request, call.request_id, call.timer
        if deployment.full is None:
            raise NotDeployed(f"the robot does not hold the full model of split {manifest.id}; redeploy it")
        with timer.stage("model"):
            outputs = deployment.full.run({deployment.full.input_names[0]: pixels.batch})
        with timer.stage("postprocess"):
            (found,) = answer_batch(outputs, manifest, 1, request.options)
            answer = place(found, pixels.geometry, manifest.postprocessing.labels)
        feature_bytes = sum(spec.elements * 4 for spec in manifest.cut)
        return _result(
            deployment,
            "all-robot",
            request_id,
            answer,
            timer,
            WireBytes(sent=0, received=0, feature_fp32=feature_bytes, image=len(request.image)),
            Providers(robot=deployment.full.provider, edge=None),
        )

    def _merge(
        self,
        deployment: Deployment,
        mode: Mode,
        reply: EdgeReply,
        geometry: Geometry,
        timer: StageTimer,
        sizes: _Sizes,
        request_id: str,
    ) -> InferenceResult:
        edge_ms = sum(stage.ms for stage in reply.result.stages)
        # What the round trip cost beyond the edge's own work: transfer, HTTP and JSON on both sides.
        timer.add("network", max(reply.round_trip_ms - edge_ms, 0.0), where="link")
        timer.stages.extend(reply.result.stages)
        if not reply.result.answers:
            raise BadGateway("the edge's answer has no result for the image")
        with timer.stage("place"):
            answer = place(reply.result.answers[0], geometry, deployment.manifest.postprocessing.labels)
        return _result(
            deployment,
            mode,
            request_id,
            answer,
            timer,
            WireBytes(sent=sizes.sent, received=reply.received_bytes, feature_fp32=sizes.features, image=sizes.image),
            Providers(robot=deployment.part.provider if mode == "split" else None, edge=reply.result.provider),
        )


def _result(
    deployment: Deployment,
    mode: Mode,
    request_id: str,
    answer: Answer,
    timer: StageTimer,
    wire: WireBytes,
    providers: Providers,
) -> InferenceResult:
    manifest = deployment.manifest
    return InferenceResult(
        mode=mode,
        split_id=manifest.id,
        request_id=request_id,
        model_id=manifest.model_id,
        model_name=manifest.model_name,
        split_point=manifest.split_point,
        bits=manifest.quantization.bits,
        weights_trained=manifest.weights_trained,
        answer=answer,
        predictions=answer.predictions,
        stages=timer.stages,
        total_ms=_total(timer),
        bytes=wire,
        providers=providers,
    )


def _total(timer: StageTimer) -> float:
    return round(sum(stage.ms for stage in timer.stages), 3)
