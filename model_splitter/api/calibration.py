"""REST routes for calibration: measure clip ranges and fidelity per split point and bit width, read them back."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidArgument, NotFound
from common.manifest import Scheme
from common.service_api import read_upload
from model_splitter.context import SplitterContext
from model_splitter.records import CalibrationResult
from model_splitter.services.calibration import (
    DEFAULT_CALIBRATION_BITS,
    DEFAULT_METHOD,
    MAX_CALIBRATION_IMAGES,
    calibrate_model,
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


def calibration_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)], tags=["calibration"])
    registry = context.registry
    settings = context.settings

    @router.post(
        "/models/{model_id}/calibrate",
        summary="Calibrate clip ranges and measure fidelity for every split point and bit width",
        dependencies=[Depends(context.write_guard)],
    )
    async def calibrate(
        model_id: str,
        images: list[UploadFile] | None = File(
            None,
            description=f"calibration images (up to {MAX_CALIBRATION_IMAGES}); every other one is held out; "
            "default: 16 bundled inputs fit the ranges, 32 others measure them",
        ),
        method: str = Form(DEFAULT_METHOD, description="fixed, percentile, mse (default) or aciq"),
        per_channel: bool = Form(False, description="one range per channel (axis 1); not with fixed"),
        bits: list[str] | None = Form(None, description="bit widths, e.g. 2,4,8 (the default)"),
        scheme: Scheme = Form("affine", description="affine (zero-exact codes, the default) or clip"),
    ) -> CalibrationResult:
        registry.get_model(model_id)
        files = [image for image in images or [] if image.filename]
        if len(files) > MAX_CALIBRATION_IMAGES:
            raise InvalidArgument(f"at most {MAX_CALIBRATION_IMAGES} calibration images, got {len(files)}")
        uploads = [await read_upload(image, settings.max_image_bytes, "calibration image") for image in files]
        return await run_in_threadpool(
            calibrate_model, registry, model_id, uploads or None, method, per_channel, parse_bits(bits), scheme
        )

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
