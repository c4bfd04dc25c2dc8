"""GET /metrics: Prometheus' text format, for the operator's scraper only.

Answered to a loopback client (127.0.0.1, ::1) whose request did not come through a proxy
(no ``Forwarded`` / ``X-Forwarded-For`` / ``X-Real-IP``), or to any client that sends
``Authorization: Bearer <REFILL_METRICS_TOKEN>`` when that is set (compared in constant
time). Anyone else gets the 404 ``not_found`` problem an unknown route gets: the route is
not advertised. Never cached. The metrics themselves are in ``refill.metrics``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from ipaddress import ip_address

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from sqlalchemy import func, select

from refill import metrics
from refill.api.deps import Service
from refill.api.problems import Refused
from refill.db.database import Tx
from refill.db.schema import emails, reload_attempts, webhook_deliveries
from refill.reload.states import AttemptStatus, Trigger

router = APIRouter(include_in_schema=False)

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_loopback(host: str | None) -> bool:
    try:
        address = ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def may_scrape(host: str | None, headers: Mapping[str, str], token: SecretStr | None) -> bool:
    """The access rule of /metrics (``headers``: lower-case names, as Starlette's)."""
    expected = token.get_secret_value() if token is not None else ""
    if expected:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # Digests of equal length: the comparison says nothing of the token's length either.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(given.strip()), _digest(expected)
        ):
            return True
    return is_loopback(host) and not any(name in headers for name in FORWARDING_HEADERS)


def queue_depths(tx: Tx) -> dict[str, int]:
    """The work queues, by counts on indexed columns: ``ix_reload_attempts_status``,
    ``ix_webhook_deliveries_due`` (status, next_attempt_at), ``ix_emails_due`` (status)."""
    attempts = reload_attempts.c
    depths = {name: 0 for name in metrics.QUEUES}
    for status, count in tx.conn.execute(
        select(attempts.status, func.count())
        .where(
            attempts.status.in_((AttemptStatus.PENDING, AttemptStatus.CHARGING)),
            attempts.trigger == Trigger.AUTO,
        )
        .group_by(attempts.status)
    ):
        depths[f"reload_{status}"] = int(count)
    deliveries = webhook_deliveries.c
    depths["webhook_due"] = tx.conn.execute(
        select(func.count())
        .select_from(webhook_deliveries)
        .where(deliveries.status == "pending", deliveries.next_attempt_at <= tx.now)
    ).scalar_one()
    depths["email_pending"] = tx.conn.execute(
        select(func.count()).select_from(emails).where(emails.c.status == "pending")
    ).scalar_one()
    return depths


@router.get("/metrics")
def scrape(request: Request, refill: Service) -> Response:
    host = request.client.host if request.client else None
    if not may_scrape(host, request.headers, refill.settings.metrics_token):
        raise Refused(404, "not_found", "Not Found")  # what an unknown route answers
    collector = metrics.DatabaseCollector(
        lambda: refill.db.read(queue_depths), refill.db.engine.pool
    )
    return Response(
        metrics.scrape(collector),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
