"""Interactive API docs at ``/docs`` served from local files: FastAPI's default page loads Swagger UI from a CDN,
which robot labs without internet cannot reach. The files are Swagger UI 5.32 as the ``fastapi-offline`` wheel
ships them (only its static files are used): the first major version that renders OpenAPI 3.1, which FastAPI
writes (the ``swagger-ui-bundle`` wheel's 4.15 showed "Unable to render this definition")."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
SWAGGER_UI_DIR = str(files("fastapi_offline") / "static")


def install_offline_docs(app: FastAPI) -> None:
    """Call on an app created with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )
