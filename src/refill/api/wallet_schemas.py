"""The wallet as the API shows it: balance, held and available credits, and the auto-reload
settings with where they stand (its state, the last failure, a rail's block, the cards)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from refill.api.schemas import fmt
from refill.money import format_amount
from refill.services import WalletView


class BlockOut(BaseModel):
    rail: str = Field(description="daily_limit or monthly_cap")
    until: datetime


class FailureOut(BaseModel):
    code: str
    message: str | None
    at: datetime


class AutoReloadCardOut(BaseModel):
    payment_method_id: str
    skipped: bool = Field(
        description="Hard-declined: reloads skip it until it is updated or named again."
    )
    skipped_at: datetime | None
    skip_reason: str | None = Field(description="The decline code that made it skipped.")


class AutoReloadOut(BaseModel):
    enabled: bool
    status: str = Field(description="off, active or suspended")
    state: str = Field(
        description="The first that applies: off, suspended, action_required (3-D Secure), "
        "blocked (a safety rail), retrying (a declined charge waits for its retry), active."
    )
    next_retry_at: datetime | None = Field(description="When a declined charge is tried again.")
    last_failure: FailureOut | None = Field(
        description="The last declined auto-reload, unless one succeeded since."
    )
    waiting_reload_id: str | None = Field(
        description="The reload to authenticate (action_required) or retry now (retrying)."
    )
    mode: str
    threshold: str | None
    reload_amount: str | None
    target_balance: str | None
    payment_method_id: str | None = Field(description="The primary card.")
    payment_method_ids: list[str] = Field(description="Every card, in the order charged.")
    cards: list[AutoReloadCardOut] = Field(description="Every card, in order, with its skip.")
    monthly_cap: str | None
    daily_limit: int
    suspended_reason: str | None
    blocked: BlockOut | None = Field(description="A safety rail stopping reloads until then.")


class WalletOut(BaseModel):
    id: str
    currency: str
    balance: str
    held: str = Field(description="Held by live calls (active holds).")
    available: str = Field(description="balance - held: what calls and usage can spend.")
    auto_reload: AutoReloadOut

    @classmethod
    def of(cls, w: WalletView) -> WalletOut:
        ar = w.auto_reload
        now = w.situation
        blocked = None if now.blocked is None else BlockOut(**asdict(now.blocked))
        failure = None if now.last_failure is None else FailureOut(**asdict(now.last_failure))
        return cls(
            id=w.id,
            currency=w.currency,
            balance=format_amount(w.balance, w.currency),
            held=format_amount(w.held, w.currency),
            available=format_amount(w.available, w.currency),
            auto_reload=AutoReloadOut(
                enabled=ar.enabled,
                status=ar.status,
                state=now.state,
                next_retry_at=now.next_retry_at,
                last_failure=failure,
                waiting_reload_id=now.waiting_reload_id,
                mode=ar.mode,
                threshold=fmt(ar.threshold, w.currency),
                reload_amount=fmt(ar.reload_amount, w.currency),
                target_balance=fmt(ar.target_balance, w.currency),
                payment_method_id=ar.payment_method_id,
                payment_method_ids=list(ar.payment_method_ids),
                cards=[
                    AutoReloadCardOut(
                        payment_method_id=c.payment_method_id,
                        skipped=c.skipped,
                        skipped_at=c.skipped_at,
                        skip_reason=c.skip_reason,
                    )
                    for c in ar.card_list
                ],
                monthly_cap=fmt(ar.monthly_cap, w.currency),
                daily_limit=ar.daily_limit,
                suspended_reason=ar.suspended_reason,
                blocked=blocked,
            ),
        )
