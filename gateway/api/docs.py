"""The OpenAPI page at /docs with Swagger UI served by facegate itself, so it works without
internet access: FastAPI's own page loads Swagger UI from a CDN and is blank on an
air-gapped network. The files in static/swagger-ui/ are swagger-ui-dist 5.35.0 from the
npm registry with its licence (5.x: FastAPI's schema is OpenAPI 3.1, which Swagger UI 4,
as packaged on PyPI by swagger-ui-bundle, does not render)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = "/docs-assets"
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"


def install_docs(app: FastAPI) -> None:
    """Serve /docs from local assets; ``app`` must be created with ``docs_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # Swagger UI would otherwise fetch a badge from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
