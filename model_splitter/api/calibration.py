"""REST routes for calibration: measure clip ranges and fidelity per split point and bit width, read them back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidArgument, NotFound
from common.manifest import Scheme
from common.service_api import read_image_uploads
from model_splitter.context import SplitterContext
from model_splitter.records import Allocation, CalibrationResult
from model_splitter.services.calibration import (
    DEFAULT_CALIBRATION_BITS,
    DEFAULT_METHOD,
    MAX_CALIBRATION_IMAGES,
    CalibrationRequest,
)


def parse_bits(values: list[str] | None) -> list[int]:
    """Bit widths from form fields: repeated (``bits=2 bits=4``) and/or comma-separated (``bits=2,4,8``)."""
    if not values:
        return list(DEFAULT_CALIBRATION_BITS)
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise InvalidArgument(f"bits must be integers such as 2,4,8, got {part!r}") from None
    return out


CalibrationForm = Callable[..., Awaitable[CalibrationRequest]]


def calibration_form(max_image_bytes: int) -> CalibrationForm:
    """A FastAPI dependency: the calibration form, checked, its images read within ``max_image_bytes`` each."""

    async def read_form(
        images: list[UploadFile] | None = File(
            None,
            description=f"calibration images (up to {MAX_CALIBRATION_IMAGES}); every other one is held out; "
            "default: 16 bundled inputs fit the ranges, 32 others measure them",
        ),
        method: str = Form(DEFAULT_METHOD, description="fixed, percentile, mse (default) or aciq"),
        per_channel: bool = Form(False, description="one range per channel (axis 1); not with fixed"),
        bits: list[str] | None = Form(None, description="bit widths, e.g. 2,4,8 (the default)"),
        scheme: Scheme = Form("affine", description="affine (zero-exact codes, the default) or clip"),
        allocation: Allocation = Form(
            "uniform", description="uniform, or rate-distortion: a width of 1..8 bits per channel (mse, affine)"
        ),
    ) -> CalibrationRequest:
        uploads = await read_image_uploads(images, MAX_CALIBRATION_IMAGES, max_image_bytes, "calibration image")
        request = CalibrationRequest(uploads, method, per_channel, tuple(parse_bits(bits)), scheme, allocation)
        request.check()
        return request

    return read_form


def calibration_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)], tags=["calibration"])
    registry = context.registry

    @router.post(
        "/models/{model_id}/calibrate",
        summary="Calibrate clip ranges and measure fidelity for every split point and bit width",
        description="Waits for the answer (seconds to minutes); POST .../calibration-jobs runs it in the background.",
        dependencies=[Depends(context.write_guard)],
    )
    async def calibrate(
        model_id: str, request: CalibrationRequest = Depends(calibration_form(context.settings.max_image_bytes))
    ) -> CalibrationResult:
        registry.get_model(model_id)
        return await run_in_threadpool(request.run, registry, model_id)

    @router.get("/models/{model_id}/calibration", summary="The model's stored calibration")
    async def calibration(model_id: str) -> CalibrationResult:
        result = registry.get_calibration(model_id)
        if result is None:
            raise NotFound(
                f"model {model_id} has not been calibrated yet: POST /api/models/{model_id}/calibrate "
                "(multipart: optional images, method, per_channel, bits)"
            )
        return result

    return router
