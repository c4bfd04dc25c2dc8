"""The interactive API documentation at /docs: Swagger UI from files vendored into the
package (``static/``, see its README), so the page works offline and a visitor's browser
asks no other site for anything. Its Content-Security-Policy holds it to that.

ReDoc is not offered (``/redoc`` is 404): a second bundle to vendor and keep up to date for
a second view of the same document. There is no OAuth2 redirect page either: the API's only
security scheme is a bearer key, typed into Swagger UI's Authorize dialog.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
DOCS_PATH = "/docs"
STATIC_PATH = "/docs/static"
# Swagger UI's default asks validator.swagger.io to check the document.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_content_security_policy(page: str) -> str:
    """Everything from this server; the page's inline start-up script (written by FastAPI's
    ``get_swagger_ui_html``) by its digest, so no other inline script can run."""
    digests = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src 'self' {digests}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def docs_page(title: str, openapi_url: str, root_path: str) -> Response:
    """The Swagger UI page, its addresses under ``root_path`` (behind a proxy's prefix)."""
    static = root_path + STATIC_PATH
    page = get_swagger_ui_html(
        openapi_url=root_path + openapi_url,
        title=title,
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = docs_content_security_policy(
        bytes(page.body).decode()
    )
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and its vendored files; the app must be made with ``docs_url=None`` and
    ``redoc_url=None`` so FastAPI's CDN-backed pages are not there too."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API docs show the OpenAPI document: keep the app's openapi_url")
    title = f"{app.title} API"
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="apidocs-static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def _swagger_ui(request: Request) -> Response:
        return docs_page(title, openapi_url, request.scope.get("root_path", "").rstrip("/"))
