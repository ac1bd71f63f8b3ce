"""Calibrating a registered model: ranges and fidelity for every split point and bit width, kept in the registry."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import onnx

from common.errors import InvalidArgument
from common.manifest import Fidelity, Scheme
from model_splitter.quantize.calibration import DEFAULT_METHOD as DEFAULT_METHOD
from model_splitter.quantize.calibration import check_bits, check_method
from model_splitter.quantize.fidelity import fidelity_table
from model_splitter.quantize.images import MAX_CALIBRATION_IMAGES as MAX_CALIBRATION_IMAGES
from model_splitter.quantize.images import calibration_sets
from model_splitter.records import (
    Allocation,
    BitsCalibration,
    CalibrationResult,
    PointCalibration,
    Progress,
    no_progress,
)
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos

DEFAULT_CALIBRATION_BITS: tuple[int, ...] = (2, 4, 8)


@dataclass(frozen=True)
class CalibrationRequest:
    """What a person asks to calibrate with; ``uploads`` empty: the bundled photos."""

    uploads: list[bytes] = field(default_factory=list)
    method: str = DEFAULT_METHOD
    per_channel: bool = False
    bits: tuple[int, ...] = DEFAULT_CALIBRATION_BITS
    scheme: Scheme = "affine"
    allocation: Allocation = "uniform"

    def check(self) -> None:
        """Refuse a bad method or width now, before a background job would find it minutes later."""
        check_method(self.method, self.per_channel)
        check_bits(self.bits)
        check_allocation(self.allocation, self.method, self.scheme)

    def run(self, registry: Registry, model_id: str, progress: Progress = no_progress) -> CalibrationResult:
        return calibrate_model(
            registry,
            model_id,
            self.uploads or None,
            self.method,
            self.per_channel,
            self.bits,
            self.scheme,
            progress,
            self.allocation,
        )


def check_allocation(allocation: Allocation, method: str, scheme: Scheme) -> None:
    if allocation == "rate-distortion" and (method != "mse" or scheme != "affine"):
        raise InvalidArgument(
            f"bits per channel are fitted with MSE ranges and affine codes; got method {method!r}, scheme {scheme!r}"
        )


def calibrate_model(
    registry: Registry,
    model_id: str,
    uploads: Sequence[bytes] | None = None,
    method: str = DEFAULT_METHOD,
    per_channel: bool = False,
    bits: Sequence[int] = DEFAULT_CALIBRATION_BITS,
    scheme: Scheme = "affine",
    progress: Progress = no_progress,
    allocation: Allocation = "uniform",
) -> CalibrationResult:
    """Estimate the clip ranges of every split point at every bit width from half the uploaded images (or the
    bundled fitting set), measure the fidelity of each on the other half (the bundled held-out set), store the
    result as the model's calibration and return it."""
    known = check_method(method, per_channel)
    bits_list = check_bits(bits)
    check_allocation(allocation, method, scheme)
    allocated = allocation == "rate-distortion"
    record = registry.get_model(model_id)
    started = time.perf_counter()
    progress("preparing images")
    images = calibration_sets(uploads, record.preprocessing, calibration_photos())
    model = onnx.load(str(registry.model_onnx_path(model_id)))
    table = fidelity_table(
        model, record, images, bits_list, known, per_channel, scheme, progress=progress, allocated=allocated
    )
    points: dict[str, PointCalibration] = {}
    for row in table:
        entries: dict[int, BitsCalibration] = {}
        for b, measured in row.by_bits.items():
            single = measured.ranges[0] if len(measured.ranges) == 1 else None
            entries[b] = BitsCalibration(
                lo=single.lo if single else None,
                hi=single.hi if single else None,
                channel_lo=single.channel_lo if single else None,
                channel_hi=single.channel_hi if single else None,
                ranges=measured.ranges,
                top1_agreement=measured.fidelity.top1_agreement,
                cosine=measured.fidelity.cosine,
                sqnr_db=measured.fidelity.sqnr_db,
                task=measured.fidelity.task,
                coded_bytes=measured.fidelity.coded_bytes,
            )
        points[row.label] = PointCalibration(tensors=row.tensors, bits=entries)
    result = CalibrationResult(
        model_id=record.id,
        method=known,
        per_channel=per_channel or allocated,
        bits=bits_list,
        images=len(images.held_out),
        fit_images=len(images.fit),
        scheme=scheme,
        allocation=allocation,
        image_source=images.source,
        created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        seconds=round(time.perf_counter() - started, 3),
        points=points,
    )
    progress("saving")
    return registry.save_calibration(result)


def load_fidelity(registry: Registry, model_id: str) -> dict[tuple[str, int], Fidelity] | None:
    """(split point label, bits) -> fidelity from the model's stored calibration; None if it was never calibrated."""
    result = registry.get_calibration(model_id)
    if result is None:
        return None
    return {
        (label, bits): entry.fidelity(result.images, result.fit_images)
        for label, point in result.points.items()
        for bits, entry in point.bits.items()
    }
