"""REST routes for fine-tuning a split's tail: the form, and the waiting route (the job route is in ``jobs``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from common.manifest import SplitManifest
from common.service_api import read_image_uploads
from model_splitter.context import SplitterContext
from model_splitter.services.fine_tuning import (
    DEFAULT_ANCHOR,
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEPS,
    MAX_ANCHOR,
    MAX_IMAGES,
    MAX_LEARNING_RATE,
    MAX_STEPS,
    FineTuneRequest,
    Widths,
    check_tunable,
    fine_tune_split,
)

FineTuneForm = Callable[..., Awaitable[FineTuneRequest]]


def fine_tune_form(max_image_bytes: int) -> FineTuneForm:
    """A FastAPI dependency: the fine-tuning form, checked, its images read within ``max_image_bytes`` each."""

    async def read_form(
        images: list[UploadFile] | None = File(
            None,
            description="unlabelled images (at least 2): every other one trains the tail, the rest measure it; "
            "default: the 16 bundled fitting inputs train, 32 others measure",
        ),
        steps: int = Form(DEFAULT_STEPS, ge=1, le=MAX_STEPS, description="training steps of 16 samples"),
        learning_rate: float = Form(
            DEFAULT_LEARNING_RATE, gt=0.0, le=MAX_LEARNING_RATE, description="Adam's learning rate, decayed to 0"
        ),
        widths: Widths = Form("split", description="split: the split's width; all: also its alternatives"),
        anchor: float = Form(
            DEFAULT_ANCHOR,
            ge=0.0,
            le=MAX_ANCHOR,
            description="weight of the L2-SP term that keeps the weights near the trained ones (0: none)",
        ),
    ) -> FineTuneRequest:
        uploads = await read_image_uploads(images, MAX_IMAGES, max_image_bytes, "image")
        request = FineTuneRequest(uploads, steps, learning_rate, widths, anchor)
        request.check()
        return request

    return read_form


def fine_tuning_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)], tags=["splits"])
    registry = context.registry

    @router.post(
        "/splits/{split_id}/fine-tune",
        summary="Train the split's tail for its bit width (distillation, no labels): answers the new split",
        description="Waits for the answer (a minute or more); POST .../fine-tune-jobs runs it in the background.",
        dependencies=[Depends(context.write_guard)],
        status_code=201,
    )
    async def fine_tune(
        split_id: str, request: FineTuneRequest = Depends(fine_tune_form(context.settings.max_image_bytes))
    ) -> SplitManifest:
        check_tunable(registry.get_split(split_id))
        return await run_in_threadpool(fine_tune_split, registry, split_id, request)

    return router
