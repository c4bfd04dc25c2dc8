"""The one place the web application is assembled: the API's routers, the billing portal,
the API docs at /docs, and (for ``refill bench`` only) the benchmark's bare route. The API
and the portal do not know of each other; this module knows of both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from refill.api.app import ROUTERS
from refill.api.guard import RequestGuard
from refill.api.problems import install_error_handlers, unexpected_problem
from refill.api.request_id import RequestId
from refill.apidocs import install_api_docs
from refill.bootstrap import Refill
from refill.portal.app import PREFIX, install_portal, unexpected_page

DESCRIPTION = """Auto-reload for prepaid parent wallets.

Every request carries `Authorization: Bearer <api key>`. Amounts are decimal strings in
the wallet's currency (`"25.00"`), never JSON numbers. Every refusal is
`application/problem+json` with a stable `code`.
"""


def create_app(refill: Refill) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        refill.start()
        try:
            yield
        finally:
            if refill.worker is not None:
                await run_in_threadpool(refill.worker.stop)
                await run_in_threadpool(refill.notifier.stop)

    app = FastAPI(
        title="Refill",
        version="0.2.0",
        summary="Auto-reload for prepaid parent wallets.",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; ours are vendored.
        docs_url=None,
        redoc_url=None,
    )
    app.state.refill = refill
    install_error_handlers(app)
    # Innermost of the middleware: its refusals under /portal become pages on the way out.
    app.add_middleware(
        RequestGuard,
        max_body_bytes=refill.settings.max_body_bytes,
        path_limits={"/v1/usage/batch": refill.settings.max_batch_body_bytes},
    )
    for router in ROUTERS:
        app.include_router(router)
    install_portal(app, refill)
    install_api_docs(app)
    # Outermost of ours (added last): every answer, even a refusal, carries X-Request-Id.
    app.add_middleware(RequestId)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        """A bug, never the caller's fault: a page under /portal, problem+json elsewhere."""
        if request.url.path.startswith(PREFIX):
            return unexpected_page(request, app.state.portal_csp)
        return await unexpected_problem(request, exc)

    if refill.settings.bench_routes:
        from refill.bench.route import install_bench_route

        install_bench_route(app, refill)
    return app
