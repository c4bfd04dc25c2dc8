"""/v1/webhooks/stripe: the gateway's events, verified by their signature (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from refill.api.deps import Service
from refill.api.problems import problems
from refill.errors import NotFound
from refill.gateway_events import handle_gateway_event

router = APIRouter(tags=["webhooks"])


@router.post(
    "/v1/webhooks/stripe", operation_id="receive_stripe_event", responses=problems(400, 404, 503)
)
async def receive_stripe_event(request: Request, refill: Service) -> dict[str, str]:
    if refill.webhooks is None:
        raise NotFound(
            "Stripe webhooks are not enabled here (REFILL_GATEWAY is not stripe)",
            code="webhooks_not_enabled",
        )
    event = refill.webhooks.parse_webhook(
        await request.body(), request.headers.get("Stripe-Signature")
    )
    outcome = await run_in_threadpool(handle_gateway_event, refill.db, refill.policy, event)
    return {"received": event.id, "outcome": outcome}
