"""`/docs` (Swagger UI) and `/redoc` of every service, with their scripts and styles served by the service
itself from the pinned `fastapi-offline` package: the clusters we run in may reach no CDN, where FastAPI's
default pages stay blank."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs-assets"
# The pages may load nothing from another origin: ReDoc's sidebar links a logo on a CDN, which the browser
# then does not even ask for (the pages render the same; an air-gapped network sees no attempt).
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def install_api_docs(app: FastAPI) -> None:
    """Serve the package's assets at ASSETS and the two pages that use them (FastAPI's own must be off:
    `docs_url=None, redoc_url=None`)."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    openapi_url, title = app.openapi_url or "/openapi.json", f"{app.title} - API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        # No call to the public validator service (its badge) either: nothing leaves the page's origin.
        swagger = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
        return _own_origin_only(swagger)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        js, icon = f"{ASSETS}/redoc.standalone.js", f"{ASSETS}/favicon.png"
        fonts = False  # Google Fonts: another origin
        redoc = get_redoc_html(
            openapi_url=openapi_url, title=title, redoc_js_url=js, redoc_favicon_url=icon, with_google_fonts=fonts
        )
        return _own_origin_only(redoc)


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = CSP
    return page
