"""The billing portal, at /portal: server-rendered pages for agency owners.

``install_portal`` mounts its static files and pages, turns every refusal under /portal into
a page (the API's problem+json is for programs), and gives each of its responses the
portal's security headers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from refill.bootstrap import Refill
from refill.portal import (
    access,
    account,
    audit,
    authenticate,
    billing,
    developers,
    exports,
    members,
    notifications,
    preview,
    receipts,
    signin,
    subteams,
)
from refill.portal.common import HERE, PortalRefused, SignInNeeded, page, plain_status
from refill.portal.security import content_security_policy, secure

log = logging.getLogger("refill.portal")
PROBLEM = "application/problem+json"
PREFIX = "/portal"

# Refusals whose problem+json says something a person can act on, in the page's words.
_PAGE_WORDS = {
    "request_too_large": "That was more than this page accepts. Go back and send less.",
    "invalid_characters": "What you sent contains a character that is never valid (a NUL). "
    "Go back, retype it and try again.",
}


async def _refusal_message(response: Response) -> str:
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    try:
        code = json.loads(body).get("code")
    except ValueError:
        code = None
    return _PAGE_WORDS.get(str(code), plain_status(response.status_code))


def install_portal(app: FastAPI, refill: Refill) -> None:
    stripe_js = refill.settings.stripe_js_url if refill.gateway.name == "stripe" else None
    csp = content_security_policy(stripe_js)
    app.state.portal_csp = csp
    app.mount("/portal/static", StaticFiles(directory=HERE / "static"), name="portal-static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse("/portal/login", status_code=303)

    @app.exception_handler(PortalRefused)
    async def _refused(request: Request, exc: PortalRefused) -> Response:
        context = {"message": exc.message, "status": exc.status}
        return page(request, "error.html", context, status=exc.status)

    @app.middleware("http")
    async def _portal_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if not request.url.path.startswith(PREFIX):
            return response
        if response.headers.get("content-type", "").startswith(PROBLEM):
            # The portal's own refusals are pages already; what is left (an unknown address,
            # a wrong method, a malformed request) came from the problem+json handlers.
            retry = response.headers.get("Retry-After")
            context = {
                "message": await _refusal_message(response),
                "status": response.status_code,
            }
            response = page(request, "error.html", context, status=response.status_code)
            if retry:
                response.headers["Retry-After"] = retry
        return secure(response, csp)

    for router in (
        billing.router,
        preview.router,
        authenticate.router,
        exports.router,
        members.router,
        developers.router,
        subteams.router,
        audit.router,
        account.router,
        notifications.router,
        receipts.router,
        signin.router,
        access.router,
    ):
        app.include_router(router)
    if refill.gateway.name == "sandbox":
        app.include_router(authenticate.sandbox_router)


def unexpected_page(request: Request, csp: str) -> Response:
    """A bug under /portal: a page with the portal's headers (the traceback is logged)."""
    log.exception("unexpected error on %s", request.url.path)
    context = {"message": plain_status(500), "status": 500}
    return secure(page(request, "error.html", context, status=500), csp)
