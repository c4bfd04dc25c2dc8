"""The HTTP API: one router per resource; each route parses, calls one service function and
renders. Errors are problem+json (``problems``); requests pass the ``guard`` first."""

from __future__ import annotations

from fastapi import APIRouter

from refill.api import (
    agency,
    events,
    explain,
    health,
    holds,
    inbound,
    insights,
    keys,
    metrics,
    payment_methods,
    preview,
    reloads,
    subteams,
    usage,
    usage_batch,
    wallet,
    webhook_endpoints,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    metrics.router,
    inbound.router,
    subteams.router,
    keys.router,
    payment_methods.router,
    wallet.router,
    insights.router,
    preview.router,
    explain.router,
    usage_batch.router,  # before usage: /v1/usage/batch is its own route
    usage.router,
    holds.router,
    reloads.router,
    agency.router,
    events.router,
    webhook_endpoints.router,
)
