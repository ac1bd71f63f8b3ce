"""The web UI's HTML pages: server-rendered templates from registry data. The pages' scripts call the JSON API."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from common.auth import TOKEN_COOKIE, token_matches
from common.errors import NotFound, Unauthorized
from common.manifest import FineTuning, SplitManifest
from model_splitter.context import SplitterContext
from model_splitter.records import ModelRecord, ModelSummary
from model_splitter.services.models import DEFAULT_INPUT_SHAPE, architecture_list
from model_splitter.store.samples import DEFAULT_SAMPLE, MEDIA_TYPES, available_samples, sample_path

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
BIT_WIDTHS = (2, 4, 8, 16, 32)
DEFAULT_BITS = 4
# The pages load nothing from anywhere but this server; the browser enforces it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def static_version() -> str:
    """A short hash of the static files, appended to their URLs so that browsers never run stale scripts."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def split_view(manifest: SplitManifest) -> dict[str, Any]:
    """What the pages need to know of a split (the manifest without its label list); ``splitOf`` in
    model-page.js makes the same from a manifest."""
    fidelity, tuning = manifest.verification.fidelity, manifest.fine_tuning
    return {
        "id": manifest.id,
        "model_id": manifest.model_id,
        "model_name": manifest.model_name,
        "split_point": manifest.split_point,
        "bits": manifest.quantization.bits,
        "clip": [[r.lo, r.hi] for r in manifest.quantization.ranges],
        "clip_method": manifest.quantization.method,
        "bits_per_channel": any(r.channel_bits for r in manifest.quantization.ranges),
        "weights_trained": manifest.weights_trained,
        "head_tail_max_abs_diff": manifest.verification.head_tail_max_abs_diff,
        "agreement": fidelity.answer_agreement if fidelity else None,
        "held_out_images": fidelity.images if fidelity else None,
        "tuned_from": tuning.base_split if tuning else None,
        "base_agreement": tuning.base_fidelity.answer_agreement if tuning else None,
        **_unseen_view(tuning),
    }


def _unseen_view(tuning: FineTuning | None) -> dict[str, Any]:
    unseen = tuning.unseen_fidelity if tuning else None
    base = tuning.base_unseen_fidelity if tuning else None
    return {
        "unseen_agreement": unseen.answer_agreement if unseen else None,
        "base_unseen_agreement": base.answer_agreement if base else None,
        "unseen_images": unseen.images if unseen else None,
    }


def splits_of(record: ModelRecord, manifests: list[SplitManifest]) -> list[dict[str, Any]]:
    order = {point.label: point.index for point in record.split_points}
    mine = [m for m in manifests if m.model_id == record.id]
    mine.sort(key=lambda m: (order.get(m.split_point, len(order)), m.quantization.bits, m.id))
    return [split_view(m) for m in mine]


def _safe_next(target: str) -> str:
    """Only paths on this server: an open redirect would let a link send a signed-in person anywhere."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def ui_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals["static_version"] = static_version()
    templates.env.globals["auth_enabled"] = context.settings.token is not None
    registry = context.registry

    def render(
        request: Request, template: str, page: str, data: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        response = templates.TemplateResponse(
            request, template, {"page": page, "page_data": data, **data}, status_code=status_code
        )
        response.headers["content-security-policy"] = CONTENT_SECURITY_POLICY
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        return response

    async def signed_out(request: Request) -> HTMLResponse | None:
        """The sign-in page when reads are protected and this browser has no valid token, else None."""
        try:
            await context.read_guard(request)
        except Unauthorized:
            return render(request, "login.html", "login", {"next": _safe_next(request.url.path), "message": ""}, 401)
        return None

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", "login", {"next": _safe_next(next), "message": ""})

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:
        if not token_matches(token, context.settings.token):
            message = "That is not the token set in SPLITTER_TOKEN."
            return render(request, "login.html", "login", {"next": _safe_next(next), "message": message}, 401)
        response = RedirectResponse(_safe_next(next), status_code=303)
        if context.sessions is not None:
            response.set_cookie(
                TOKEN_COOKIE,
                context.sessions.issue(),
                max_age=int(context.sessions.lifetime_s),
                httponly=True,
                secure=request.url.scheme == "https",  # behind a TLS proxy: uvicorn --proxy-headers sets it
                samesite="strict",
                path="/",
            )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if context.sessions is not None:
            context.sessions.revoke(request.cookies.get(TOKEN_COOKIE, ""))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    @router.get("/", response_class=HTMLResponse)
    async def models_page(request: Request) -> HTMLResponse:
        if (login_page_response := await signed_out(request)) is not None:
            return login_page_response
        records = await run_in_threadpool(registry.list_models)
        listed = await run_in_threadpool(architecture_list)
        names = [architecture.name for architecture in listed]
        groups: dict[str, list[str]] = {}
        for architecture in listed:
            groups.setdefault(architecture.family, []).append(architecture.name)
        data = {
            "models": [ModelSummary.of(r).model_dump() for r in reversed(records)],
            "architecture_groups": groups,
            "default_arch": "resnet18" if "resnet18" in names else (names or [""])[0],
            "default_input_shape": ",".join(str(d) for d in DEFAULT_INPUT_SHAPE),
        }
        return render(request, "models.html", "models", data)

    @router.get("/models/{model_id}", response_class=HTMLResponse)
    async def model_page(request: Request, model_id: str) -> HTMLResponse:
        if (login_page_response := await signed_out(request)) is not None:
            return login_page_response
        try:
            record = await run_in_threadpool(registry.get_model, model_id)
        except NotFound as exc:
            return render(request, "error.html", "models", {"title": "Model not found", "message": exc.message}, 404)
        manifests = await run_in_threadpool(registry.list_splits)
        calibrated = await run_in_threadpool(registry.get_calibration, model_id) is not None
        data = {
            "model": record.model_dump(mode="json"),
            "calibrated": calibrated,
            # all-edge sends the camera's JPEG, not pixels: the bundled photo stands for it on the chart.
            "sample_image": {"name": DEFAULT_SAMPLE, "bytes": sample_path(DEFAULT_SAMPLE).stat().st_size},
            "splits": splits_of(record, manifests),
            "bit_widths": list(BIT_WIDTHS),
            "default_bits": DEFAULT_BITS,
        }
        return render(request, "model.html", "model", data)

    @router.get("/infer", response_class=HTMLResponse)
    async def infer_page(request: Request, split: str | None = None) -> HTMLResponse:
        if (login_page_response := await signed_out(request)) is not None:
            return login_page_response
        records = await run_in_threadpool(registry.list_models)
        manifests = await run_in_threadpool(registry.list_splits)
        groups = [
            {"model": ModelSummary.of(r).model_dump(), "splits": splits_of(r, manifests)} for r in reversed(records)
        ]
        data = {
            "groups": [g for g in groups if g["splits"]],
            "selected_split": split or "",
            "samples": available_samples(),
        }
        return render(request, "infer.html", "infer", data)

    @router.get("/stream", response_class=HTMLResponse)
    async def stream_page(request: Request) -> HTMLResponse:
        if (login_page_response := await signed_out(request)) is not None:
            return login_page_response
        return render(request, "stream.html", "stream", {})

    @router.get("/samples/{name}", response_class=FileResponse, dependencies=[Depends(context.read_guard)])
    async def sample(name: str) -> FileResponse:
        path = sample_path(name)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))

    return router
