"""The HTTP API: parse, call one service function, render. Errors are problem+json."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from refill import services, webhooks
from refill.api import schemas as s
from refill.api.guard import RequestGuard
from refill.api.problems import install_error_handlers, problem
from refill.bootstrap import Refill
from refill.errors import Forbidden, NotFound, PaymentFailed, Unauthenticated
from refill.money import parse_amount
from refill.portal.routes import install_portal
from refill.reload import UNSET, SettingsChange
from refill.services import Principal

log = logging.getLogger("refill.api")


def create_app(refill: Refill) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if refill.worker is not None:
            refill.worker.start()
        try:
            yield
        finally:
            if refill.worker is not None:
                await run_in_threadpool(refill.worker.stop)

    app = FastAPI(
        title="Refill",
        version="0.1.0",
        summary="Auto-reload for prepaid parent wallets.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Innermost of the middleware: its refusals under /portal become pages on the way out.
    app.add_middleware(RequestGuard, max_body_bytes=refill.settings.max_body_bytes)
    install_portal(app, refill)
    db = refill.db

    def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'")
        return services.authenticate(db, authorization.removeprefix("Bearer ").strip())

    def owner(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.is_owner:
            raise Forbidden(
                "this needs the agency owner's key; subteam keys can record usage "
                "and authorize calls only"
            )
        return p

    def for_subteam(p: Principal, subteam_id: str) -> None:
        if not p.is_owner and p.subteam_id != subteam_id:
            raise Forbidden("a subteam key acts for its own subteam only")

    Owner = Annotated[Principal, Depends(owner)]
    Anyone = Annotated[Principal, Depends(principal)]
    Limit = Annotated[int, Query(ge=1, le=services.MAX_PAGE)]

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        try:
            db.read(lambda tx: tx.conn.execute(text("SELECT 1")).scalar())
        except Exception:
            return problem(503, "database_unavailable", "Not ready", "the database does not answer")
        return JSONResponse({"status": "ready"})

    @app.post("/v1/webhooks/stripe")
    async def stripe_webhook(request: Request) -> dict[str, str]:
        """Stripe's events, verified by their signature (no API key: Stripe sends them)."""
        if refill.webhooks is None:
            raise NotFound(
                "Stripe webhooks are not enabled here (REFILL_GATEWAY is not stripe)",
                code="webhooks_not_enabled",
            )
        event = refill.webhooks.parse_webhook(
            await request.body(), request.headers.get("Stripe-Signature")
        )
        outcome = await run_in_threadpool(webhooks.handle_stripe_event, db, refill.policy, event)
        return {"received": event.id, "outcome": outcome}

    @app.post("/v1/subteams", status_code=201)
    def create_subteam(body: s.SubteamCreate, p: Owner) -> s.SubteamOut:
        return s.SubteamOut.of(services.create_subteam(db, agency_id=p.agency_id, name=body.name))

    @app.get("/v1/subteams")
    def list_subteams(
        p: Owner, limit: Limit = 50, cursor: str | None = None
    ) -> s.ListOf[s.SubteamOut]:
        page = services.list_subteams(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.SubteamOut](
            data=[s.SubteamOut.of(t) for t in page.data], next_cursor=page.next_cursor
        )

    @app.post("/v1/subteams/{subteam_id}/keys", status_code=201)
    def create_subteam_key(
        subteam_id: str, p: Owner, body: s.SubteamKeyCreate | None = None
    ) -> s.KeyOut:
        key = services.create_subteam_key(
            db,
            agency_id=p.agency_id,
            subteam_id=subteam_id,
            name=body.name if body else None,
            actor=p.actor,
        )
        return s.KeyOut(id=key.id, api_key=key.secret)

    @app.get("/v1/keys")
    def list_keys(p: Owner, limit: Limit = 50, cursor: str | None = None) -> s.ListOf[s.ApiKeyOut]:
        page = services.list_keys(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.ApiKeyOut](
            data=[s.ApiKeyOut.of(k) for k in page.data], next_cursor=page.next_cursor
        )

    @app.post("/v1/keys", status_code=201)
    def create_key(body: s.KeyCreate, p: Owner) -> s.KeyOut:
        key = services.create_key(
            db, agency_id=p.agency_id, subteam_id=body.subteam_id, name=body.name, actor=p.actor
        )
        return s.KeyOut(id=key.id, api_key=key.secret)

    @app.post("/v1/keys/{key_id}/revoke")
    def revoke_key(key_id: str, p: Owner) -> s.ApiKeyOut:
        return s.ApiKeyOut.of(
            services.revoke_key(db, agency_id=p.agency_id, key_id=key_id, actor=p.actor)
        )

    @app.post("/v1/keys/{key_id}/roll", status_code=201)
    def roll_key(key_id: str, p: Owner, body: s.KeyRoll | None = None) -> s.RolledKeyOut:
        issued, old = services.roll_key(
            db,
            agency_id=p.agency_id,
            key_id=key_id,
            expires_in=timedelta(seconds=body.expires_in_seconds if body else 0),
            actor=p.actor,
        )
        return s.RolledKeyOut(id=issued.id, api_key=issued.secret, previous=s.ApiKeyOut.of(old))

    @app.post("/v1/payment-methods", status_code=201)
    def save_payment_method(
        body: s.PaymentMethodCreate, p: Owner, response: Response
    ) -> s.PaymentMethodOut:
        pm, created = services.save_payment_method(
            db, refill.gateway, agency_id=p.agency_id, token=body.token, actor=p.actor
        )
        if not created:
            response.status_code = 200
        return s.PaymentMethodOut.of(pm, db.clock.now())

    @app.get("/v1/payment-methods")
    def list_payment_methods(
        p: Owner, limit: Limit = 50, cursor: str | None = None
    ) -> s.ListOf[s.PaymentMethodOut]:
        now = db.clock.now()
        page = services.list_payment_methods(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.PaymentMethodOut](
            data=[s.PaymentMethodOut.of(pm, now) for pm in page.data], next_cursor=page.next_cursor
        )

    @app.delete("/v1/payment-methods/{payment_method_id}", status_code=204)
    def remove_payment_method(payment_method_id: str, p: Owner) -> Response:
        services.remove_payment_method(
            db,
            agency_id=p.agency_id,
            payment_method_id=payment_method_id,
            actor=p.actor,
            gateway=refill.gateway,
        )
        return Response(status_code=204)

    @app.get("/v1/wallet")
    def get_wallet(p: Owner) -> s.WalletOut:
        return s.WalletOut.of(services.get_wallet(db, refill.policy, agency_id=p.agency_id))

    @app.put("/v1/wallet/auto-reload")
    def update_auto_reload(body: s.AutoReloadUpdate, p: Owner) -> s.WalletOut:
        given = body.model_fields_set

        def amount(name: str) -> Any:
            if name not in given:
                return UNSET
            value = getattr(body, name)
            return None if value is None else parse_amount(value, field=name)

        def plain(name: str) -> Any:
            return getattr(body, name) if name in given else UNSET

        change = SettingsChange(
            enabled=body.enabled,
            threshold=amount("threshold"),
            reload_amount=amount("reload_amount"),
            payment_method_id=plain("payment_method_id"),
            mode=plain("mode"),
            target_balance=amount("target_balance"),
            monthly_cap=amount("monthly_cap"),
            daily_limit=plain("daily_limit"),
        )
        wallet = services.update_auto_reload(
            db,
            refill.gateway,
            refill.policy,
            agency_id=p.agency_id,
            currency=p.currency,
            change=change,
            actor=p.actor,
        )
        return s.WalletOut.of(wallet)

    @app.post("/v1/wallet/credits", status_code=201)
    def add_credits(
        body: s.CreditsCreate,
        p: Owner,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> s.ReloadOut:
        attempt, created = services.add_credits(
            db,
            refill.processor,
            refill.policy,
            agency_id=p.agency_id,
            currency=p.currency,
            amount=parse_amount(body.amount),
            payment_method_id=body.payment_method_id,
            request_key=idempotency_key,
        )
        out = s.ReloadOut.of(attempt)
        if attempt.status == "failed":
            raise PaymentFailed(
                f"the card was declined: {attempt.failure_message or attempt.failure_code}",
                reload=out.model_dump(mode="json"),
                decline_code=attempt.failure_code,
            )
        if attempt.status != "succeeded":
            response.status_code = 202  # requires_action, or still charging
        elif not created:
            response.status_code = 200
        return out

    @app.post("/v1/usage", status_code=201)
    def record_usage(body: s.UsageCreate, p: Anyone, response: Response) -> s.TransferOut:
        for_subteam(p, body.subteam_id)
        transfer, created = services.record_usage(
            db,
            refill.policy,
            agency_id=p.agency_id,
            subteam_id=body.subteam_id,
            amount=parse_amount(body.amount),
            reference=body.reference,
            description=body.description,
        )
        if not created:
            response.status_code = 200
        return s.TransferOut.of(transfer, p.currency)

    @app.post("/v1/calls/authorize")
    def authorize_call(body: s.AuthorizeRequest, p: Anyone) -> s.AuthorizationOut:
        for_subteam(p, body.subteam_id)
        result = services.authorize_call(db, agency_id=p.agency_id, subteam_id=body.subteam_id)
        return s.AuthorizationOut(
            allowed=result.allowed,
            reason=result.reason,
            available=s.fmt(result.available, result.currency),
            currency=result.currency,
        )

    @app.get("/v1/reloads")
    def list_reloads(
        p: Owner, limit: Limit = 50, cursor: str | None = None
    ) -> s.ListOf[s.ReloadOut]:
        page = services.list_reloads(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.ReloadOut](
            data=[s.ReloadOut.of(a) for a in page.data], next_cursor=page.next_cursor
        )

    @app.get("/v1/reloads/{reload_id}")
    def get_reload(reload_id: str, p: Owner) -> s.ReloadOut:
        return s.ReloadOut.of(services.get_reload(db, agency_id=p.agency_id, attempt_id=reload_id))

    @app.post("/v1/reloads/{reload_id}/cancel")
    def cancel_reload(reload_id: str, p: Owner) -> s.ReloadOut:
        return s.ReloadOut.of(
            services.cancel_reload(
                db, refill.gateway, refill.policy, agency_id=p.agency_id, attempt_id=reload_id
            )
        )

    @app.get("/v1/agency")
    def get_agency(p: Owner) -> s.AgencyOut:
        return s.AgencyOut.of(services.get_agency(db, p.agency_id))

    @app.patch("/v1/agency")
    def update_agency(body: s.AgencyUpdate, p: Owner) -> s.AgencyOut:
        agency = services.set_agency_timezone(
            db, agency_id=p.agency_id, timezone=body.timezone, actor=p.actor
        )
        return s.AgencyOut.of(agency)

    @app.get("/v1/audit-log")
    def list_audit_log(
        p: Owner, limit: Limit = 50, cursor: str | None = None
    ) -> s.ListOf[s.AuditOut]:
        page = services.list_audit_log(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.AuditOut](
            data=[s.AuditOut.of(e) for e in page.data], next_cursor=page.next_cursor
        )

    if refill.settings.bench_routes:
        _install_bench_route(app, refill)

    @app.get("/v1/transactions")
    def list_transactions(
        p: Owner, limit: Limit = 50, cursor: str | None = None
    ) -> s.ListOf[s.TransferOut]:
        page = services.list_transfers(db, agency_id=p.agency_id, limit=limit, cursor=cursor)
        return s.ListOf[s.TransferOut](
            data=[s.TransferOut.of(t, p.currency) for t in page.data], next_cursor=page.next_cursor
        )

    return app


def _install_bench_route(app: FastAPI, refill: Refill) -> None:
    """The http-usage benchmark's baseline: the same SQL guarantees on a bare route."""
    from refill.bench.baseline import BaselineSQL
    from refill.ids import system_account_id, wallet_id_for

    sql = BaselineSQL(refill.db.dialect)
    revenue = system_account_id("usage_revenue", "USD")

    @app.post("/bench/baseline-usage", include_in_schema=False)
    def bench_baseline_usage(body: dict[str, str]) -> dict[str, int]:
        conn = refill.db.engine.raw_connection()
        try:
            balance = sql.record_usage(
                conn,
                agency_id=body["agency_id"],
                wallet_id=wallet_id_for(body["agency_id"]),
                revenue_id=revenue,
                subteam_id=body["subteam_id"],
                amount=100_000,
                reference=body["reference"],
            )
        finally:
            conn.close()
        return {"balance": balance}
