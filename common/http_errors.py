"""The one place where domain errors become HTTP responses, and where the OpenAPI schema says so."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import SplitComputingError

# What any operation may answer besides its success: every class of common.errors but the 500 (a bug, not an
# answer). The splitter and the runtimes share the list; an operation that cannot reach one of them simply never
# sends it.
ERROR_STATUSES = {
    400: "Bad request: a malformed body, image, frame or argument",
    401: "The token is missing or wrong",
    404: "No such model, split or job",
    406: "The answer does not come in the media type the Accept header asks for",
    409: "Conflicts with the current state (a split not deployed here, a busy queue)",
    413: "The body is larger than this service accepts",
    415: "The body's content type is not one this operation reads",
    422: "Understood but refused: a request field, a model or a frame that cannot be served",
    502: "A peer service answered something this service cannot use",
    503: "A peer service is down or refused at once",
    504: "A peer service did not answer in time",
    507: "The disk is full; nothing was stored",
}


class ErrorBody(BaseModel):
    """Every error answer of every service."""

    error: str = Field(description="a stable code, e.g. unknown_split, invalid_image, payload_too_large")
    detail: str = Field(description="what went wrong and what to do, for a person")


class ProtocolErrorBody(BaseModel):
    """Errors on the Open Inference Protocol's routes (``/v2/...``), in that protocol's own form."""

    error: str = Field(description="what went wrong, for a person")


# The Open Inference Protocol's paths: their errors are ProtocolErrorBody, as OIP clients read them.
PROTOCOL_PREFIX = "/v2"

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    document_errors(app)

    @app.exception_handler(SplitComputingError)
    async def _domain_error(request: Request, exc: SplitComputingError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
        return JSONResponse(status_code=exc.status_code, content=exc.to_dict())

    @app.exception_handler(StarletteHTTPException)
    async def _framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself (a body that is not JSON, an unknown path, a wrong method): same body.
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return JSONResponse(
            status_code=exc.status_code, content={"error": code, "detail": str(exc.detail)}, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
            problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
        return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": "; ".join(problems)})


def document_errors(app: FastAPI) -> None:
    """Declare ``ErrorBody`` for every error status on every operation, instead of FastAPI's HTTPValidationError."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components["ProtocolErrorBody"] = ProtocolErrorBody.model_json_schema()
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for route, path in document.get("paths", {}).items():
            body = "ProtocolErrorBody" if route.startswith(PROTOCOL_PREFIX) else "ErrorBody"
            reference = {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_STATUSES.items():
                    responses[str(status)] = {"description": description, "content": reference}
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]
