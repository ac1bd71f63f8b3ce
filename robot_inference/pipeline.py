"""One inference on the robot, in any of the three plans: split, all-robot, all-edge."""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass

import numpy as np
from PIL import Image

from common.codes import codes_to_records, features_to_codes, has_codes
from common.deployments import Deployment, DeploymentSet
from common.errors import BadGateway, InvalidArgument, InvalidImage, NotDeployed, UpstreamTimeout, UpstreamUnavailable
from common.imaging import Geometry, decode_image, geometry_of, image_size, preprocess, release
from common.manifest import SplitManifest, is_hex
from common.observability import request_id_var
from common.postprocess import Answer, DetectionOptions, answer_batch
from common.postprocess.answers import NO_OPTIONS
from common.postprocess.placement import place
from common.results import MODES, InferenceResult, Mode, Providers, WireBytes
from common.sessions import LoadedSession
from common.tensor_records import encode_features, image_record
from common.timing import StageTimer
from common.wire import encode_frame
from robot_inference.edge_client import EdgeReply
from robot_inference.edge_fleet import EdgeFleet
from robot_inference.oip_tail import OipRequest, infer_request, tail_outputs

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
    image: bytes | Image.Image  # an encoded file, or pixels a camera delivered (a stream's raw frames)
    options: DetectionOptions


@dataclass(frozen=True)
class _Call:
    """One request as it goes through the pipeline: what was asked, its id, its timings."""

    request: _Request
    request_id: str
    timer: StageTimer


@dataclass(frozen=True)
class _Sizes:
    sent: int
    features: int
    image: int


@dataclass(frozen=True)
class Prepared:
    """The robot's part of one inference, done: for split and all-edge the frame to send, for all-robot the result.

    ``RobotPipeline.complete`` does the rest (the edge, then placing the answer). A stream prepares frame n + 1 while
    frame n is still with the edge."""

    deployment: Deployment
    call: _Call
    mode: Mode
    geometry: Geometry
    frame: bytes | None = None
    sizes: _Sizes | None = None
    result: InferenceResult | None = None
    bits: int | None = None  # split: the width the features travel at
    oip: OipRequest | None = None  # split over the Open Inference Protocol: the request instead of a frame


class RobotPipeline:
    def __init__(self, deployments: DeploymentSet, edge: EdgeFleet, fallback_to_robot: bool = False) -> None:
        self.deployments = deployments
        self.edge = edge
        self.fallback_to_robot = fallback_to_robot

    def infer(
        self, image: bytes, mode: Mode, split_id: str | None = None, options: DetectionOptions = NO_OPTIONS
    ) -> InferenceResult:
        deployment = self.deployments.get(split_id)
        request = _Request(image, options)
        if mode == "all-robot" or not self.fallback_to_robot or deployment.full is None:
            return self.complete(self._prepare(deployment, request, mode))
        try:
            return self.complete(self._prepare(deployment, request, mode))
        except (UpstreamUnavailable, UpstreamTimeout, BadGateway) as exc:
            logger.warning("edge failed (%s); answering on the robot", exc.message)
            result = self.complete(self._prepare(deployment, request, "all-robot"))
            return result.model_copy(update={"fallback_reason": f"{mode} failed, answered on the robot: {exc.message}"})

    def prepare(
        self,
        image: bytes | Image.Image,
        mode: Mode,
        split_id: str | None = None,
        bits: int | None = None,
        options: DetectionOptions = NO_OPTIONS,
    ) -> Prepared:
        """The robot's compute for one image (``bits``: one of the split's widths, its own by default)."""
        return self._prepare(self.deployments.get(split_id), _Request(image, options), mode, bits)

    def complete(self, prepared: Prepared) -> InferenceResult:
        """Send the prepared frame and place the edge's answer (all-robot: the result is already there)."""
        if prepared.result is not None:
            return prepared.result
        if prepared.oip is not None:
            return self._complete_oip(prepared, prepared.oip)
        assert prepared.frame is not None and prepared.sizes is not None
        call = prepared.call
        reply = self.edge.infer(prepared.frame, call.request_id, call.request.options)
        return self._merge(prepared, reply)

    def _prepare(self, deployment: Deployment, request: _Request, mode: Mode, bits: int | None = None) -> Prepared:
        call = _Call(request, frame_request_id(), StageTimer("robot"))
        if mode == "all-edge" and self.edge.protocol == "oip":
            raise InvalidArgument(
                "all-edge sends the image to the edge's /api/infer; this robot speaks the Open Inference Protocol "
                "(ROBOT_EDGE_PROTOCOL=oip), whose servers hold tails only: use mode split or all-robot"
            )
        if mode == "all-edge":
            return self._all_edge(deployment, call)
        spec = deployment.manifest.preprocessing
        with call.timer.stage("decode"):
            if isinstance(request.image, Image.Image):
                decoded = request.image.convert(spec.color)
            else:
                decoded = decode_image(request.image, spec.color, spec.resize_shorter_to)
        with call.timer.stage("preprocess"):
            batch = preprocess(decoded, spec)
            geometry = geometry_of(decoded.size, spec)
            release(decoded)
        if mode == "all-robot":
            return self._all_robot(deployment, call, batch, geometry)
        return self._split(deployment, call, batch, geometry, bits)

    def _split(
        self, deployment: Deployment, call: _Call, batch: np.ndarray, geometry: Geometry, bits: int | None
    ) -> Prepared:
        manifest = deployment.manifest
        if deployment.codes is not None and bits in (None, manifest.quantization.bits):
            return self._split_in_graph(deployment, deployment.codes, call, batch, geometry)
        with call.timer.stage("head"):
            features = deployment.part.run({deployment.part.input_names[0]: batch})
        if self.edge.protocol == "oip":
            return self._split_oip(deployment, call, features, geometry, bits)
        with call.timer.stage("quantize"):
            records = encode_features(manifest, features, bits)
            frame = encode_frame(manifest.id, records, request_id=call.request_id)
        feature_bytes = sum(int(np.asarray(t).size) * 4 for t in features)
        sizes = _Sizes(len(frame), feature_bytes, _image_bytes(call.request.image))
        travel = bits if bits is not None else manifest.quantization.bits
        return Prepared(deployment, call, "split", geometry, frame=frame, sizes=sizes, bits=travel)

    def _split_in_graph(
        self, deployment: Deployment, codes_head: LoadedSession, call: _Call, batch: np.ndarray, geometry: Geometry
    ) -> Prepared:
        """The head with the quantizer inside: its outputs are the packed codes, framed (or sent) as they are."""
        manifest = deployment.manifest
        with call.timer.stage("head + quantize (in graph)"):
            outputs = codes_head.run({codes_head.input_names[0]: batch})
        codes = dict(zip(codes_head.output_names, outputs, strict=True))
        if self.edge.protocol == "oip":
            with call.timer.stage("quantize"):
                request = infer_request(manifest, codes, call.request_id)
            return self._oip_prepared(deployment, call, geometry, request)
        with call.timer.stage("quantize"):
            frame = encode_frame(manifest.id, codes_to_records(manifest, codes), request_id=call.request_id)
        sizes = _Sizes(len(frame), _feature_bytes(manifest), _image_bytes(call.request.image))
        return Prepared(deployment, call, "split", geometry, frame=frame, sizes=sizes, bits=manifest.quantization.bits)

    def _split_oip(
        self, deployment: Deployment, call: _Call, features: list[np.ndarray], geometry: Geometry, bits: int | None
    ) -> Prepared:
        manifest = deployment.manifest
        own = manifest.quantization.bits
        if bits is not None and bits != own:
            raise InvalidArgument(
                f"over the Open Inference Protocol split {manifest.id} travels at its own {own} bits (the tail on "
                f"the server takes those codes), not {bits}"
            )
        with call.timer.stage("quantize"):
            codes = features_to_codes(manifest, features) if has_codes(manifest) else _floats(manifest, features)
            request = infer_request(manifest, codes, call.request_id)
        return self._oip_prepared(deployment, call, geometry, request)

    def _oip_prepared(self, deployment: Deployment, call: _Call, geometry: Geometry, request: OipRequest) -> Prepared:
        manifest = deployment.manifest
        sizes = _Sizes(len(request.body), _feature_bytes(manifest), _image_bytes(call.request.image))
        return Prepared(deployment, call, "split", geometry, sizes=sizes, bits=manifest.quantization.bits, oip=request)

    def _complete_oip(self, prepared: Prepared, request: OipRequest) -> InferenceResult:
        deployment, call, sizes = prepared.deployment, prepared.call, prepared.sizes
        assert sizes is not None
        reply = self.edge.infer_oip(request, call.request_id)
        # The server's own time is not in its answer: the whole round trip is one stage, on the link.
        call.timer.add("edge round trip (oip)", reply.round_trip_ms, where="link")
        with call.timer.stage("postprocess"):
            outputs = tail_outputs(deployment.manifest, reply.body, reply.header_length)
            (found,) = answer_batch(outputs, deployment.manifest, 1, call.request.options)
        with call.timer.stage("place"):
            answer = place(found, prepared.geometry, deployment.manifest.postprocessing.labels)
        wire = WireBytes(sent=sizes.sent, received=len(reply.body), feature_fp32=sizes.features, image=sizes.image)
        providers = Providers(robot=deployment.part.provider, edge=None)
        result = _result(deployment, "split", call.request_id, answer, call.timer, wire, providers)
        return result.model_copy(update={"bits": prepared.bits, "edge_url": reply.edge_url})

    def _all_edge(self, deployment: Deployment, call: _Call) -> Prepared:
        manifest = deployment.manifest
        image = call.request.image
        with call.timer.stage("encode"):
            if isinstance(image, Image.Image):  # a camera's pixels: the edge gets what a camera would send
                image = encode_jpeg(image)
            if not image:  # the other plans say so when decoding; a zero-length tensor would be refused less clearly
                raise InvalidImage("the image is empty: send a JPEG, PNG or WebP file")
            geometry = geometry_of(image_size(image), manifest.preprocessing)
            frame = encode_frame(manifest.id, [image_record(IMAGE_TENSOR_NAME, image)], request_id=call.request_id)
        feature_bytes = _feature_bytes(manifest)
        sizes = _Sizes(len(frame), feature_bytes, len(image))
        return Prepared(deployment, call, "all-edge", geometry, frame=frame, sizes=sizes)

    def _all_robot(self, deployment: Deployment, call: _Call, batch: np.ndarray, geometry: Geometry) -> Prepared:
        manifest = deployment.manifest
        if deployment.full is None:
            raise NotDeployed(f"the robot does not hold the full model of split {manifest.id}; redeploy it")
        with call.timer.stage("model"):
            outputs = deployment.full.run({deployment.full.input_names[0]: batch})
        with call.timer.stage("postprocess"):
            (found,) = answer_batch(outputs, manifest, 1, call.request.options)
            answer = place(found, geometry, manifest.postprocessing.labels)
        feature_bytes = _feature_bytes(manifest)
        result = _result(
            deployment,
            "all-robot",
            call.request_id,
            answer,
            call.timer,
            WireBytes(sent=0, received=0, feature_fp32=feature_bytes, image=_image_bytes(call.request.image)),
            Providers(robot=deployment.full.provider, edge=None),
        )
        return Prepared(deployment, call, "all-robot", geometry, result=result)

    def _merge(self, prepared: Prepared, reply: EdgeReply) -> InferenceResult:
        deployment, mode, timer, sizes = prepared.deployment, prepared.mode, prepared.call.timer, prepared.sizes
        assert sizes is not None
        edge_ms = sum(stage.ms for stage in reply.result.stages)
        # What the round trip cost beyond the edge's own work: transfer, HTTP and JSON on both sides.
        timer.add("network", max(reply.round_trip_ms - edge_ms, 0.0), where="link")
        timer.stages.extend(reply.result.stages)
        if not reply.result.answers:
            raise BadGateway("the edge's answer has no result for the image")
        with timer.stage("place"):
            answer = place(reply.result.answers[0], prepared.geometry, deployment.manifest.postprocessing.labels)
        result = _result(
            deployment,
            mode,
            prepared.call.request_id,
            answer,
            timer,
            WireBytes(sent=sizes.sent, received=reply.received_bytes, feature_fp32=sizes.features, image=sizes.image),
            Providers(robot=deployment.part.provider if mode == "split" else None, edge=reply.result.provider),
        )
        update: dict[str, object] = {"edge_url": reply.edge_url}
        if prepared.bits is not None:
            update["bits"] = prepared.bits
        return result.model_copy(update=update)


def _feature_bytes(manifest: SplitManifest) -> int:
    """What the cut tensors of one image weigh as float32."""
    return sum(spec.elements * 4 for spec in manifest.cut)


def _floats(manifest: SplitManifest, features: list[np.ndarray]) -> dict[str, np.ndarray]:
    """A 16/32-bit split's cut tensors as the float32 inputs its tail takes (it has no codes)."""
    return {spec.name: np.asarray(t, dtype=np.float32) for spec, t in zip(manifest.cut, features, strict=True)}


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _image_bytes(image: bytes | Image.Image) -> int:
    """What the camera's image weighs: the file's bytes, or the raw pixels' (width x height x channels)."""
    if isinstance(image, Image.Image):
        return image.width * image.height * len(image.getbands())
    return len(image)


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
