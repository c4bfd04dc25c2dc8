"""Request and response bodies. Amounts travel as decimal strings, never JSON numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from refill.ledger import Transfer
from refill.money import format_amount
from refill.reload import PaymentMethod, ReloadAttempt
from refill.services import Subteam, WalletView

T = TypeVar("T")

_AMOUNT_DOC = 'A decimal string in the currency unit, such as "25.00" (at most 6 decimals).'


def amount_field(**kwargs: Any) -> Any:
    return Field(max_length=40, description=_AMOUNT_DOC, examples=["25.00"], **kwargs)


def fmt(micros: int | None, currency: str | None) -> str | None:
    return None if micros is None else format_amount(micros, currency)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubteamCreate(Body):
    name: StrictStr = Field(min_length=1, max_length=200)


class PaymentMethodCreate(Body):
    token: StrictStr = Field(
        min_length=1,
        max_length=255,
        description="A gateway PaymentMethod id, e.g. pm_card_visa in sandbox or test mode.",
    )


class AutoReloadUpdate(Body):
    """Fields left out keep their saved value."""

    enabled: StrictBool | None = None
    threshold: StrictStr | None = amount_field(default=None)
    reload_amount: StrictStr | None = amount_field(default=None)
    payment_method_id: StrictStr | None = Field(default=None, max_length=40)


class CreditsCreate(Body):
    amount: StrictStr = amount_field()
    payment_method_id: StrictStr = Field(max_length=40)


class UsageCreate(Body):
    subteam_id: StrictStr = Field(max_length=40)
    amount: StrictStr = amount_field()
    reference: StrictStr = Field(
        min_length=1,
        max_length=255,
        description="Your unique id for this usage; repeating it returns the first result.",
    )
    description: StrictStr | None = Field(default=None, max_length=500)


class AuthorizeRequest(Body):
    subteam_id: StrictStr = Field(max_length=40)


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class SubteamOut(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, t: Subteam) -> SubteamOut:
        return cls(id=t.id, name=t.name, created_at=t.created_at)


class KeyOut(BaseModel):
    id: str
    api_key: str = Field(description="Shown once; store it now.")


class PaymentMethodOut(BaseModel):
    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    expired: bool
    created_at: datetime

    @classmethod
    def of(cls, pm: PaymentMethod, now: datetime) -> PaymentMethodOut:
        return cls(
            id=pm.id,
            brand=pm.brand,
            last4=pm.last4,
            exp_month=pm.exp_month,
            exp_year=pm.exp_year,
            expired=pm.is_expired(now),
            created_at=pm.created_at,
        )


class AutoReloadOut(BaseModel):
    enabled: bool
    status: str
    threshold: str | None
    reload_amount: str | None
    payment_method_id: str | None
    suspended_reason: str | None


class WalletOut(BaseModel):
    id: str
    currency: str
    balance: str
    auto_reload: AutoReloadOut

    @classmethod
    def of(cls, w: WalletView) -> WalletOut:
        ar = w.auto_reload
        return cls(
            id=w.id,
            currency=w.currency,
            balance=format_amount(w.balance, w.currency),
            auto_reload=AutoReloadOut(
                enabled=ar.enabled,
                status=ar.status,
                threshold=fmt(ar.threshold, w.currency),
                reload_amount=fmt(ar.reload_amount, w.currency),
                payment_method_id=ar.payment_method_id,
                suspended_reason=ar.suspended_reason,
            ),
        )


class ReloadOut(BaseModel):
    id: str
    trigger: str
    amount: str
    currency: str
    status: str
    payment_method_id: str
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: ReloadAttempt) -> ReloadOut:
        return cls(
            id=a.id,
            trigger=a.trigger,
            amount=format_amount(a.amount, a.currency),
            currency=a.currency,
            status=a.status,
            payment_method_id=a.payment_method_id,
            failure_code=a.failure_code,
            failure_message=a.failure_message,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class TransferOut(BaseModel):
    id: str
    kind: str
    direction: str = Field(description="'debit' takes from the wallet, 'credit' adds to it.")
    amount: str
    currency: str
    balance_after: str
    reference: str
    subteam_id: str | None
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, t: Transfer, currency: str) -> TransferOut:
        debit = t.debit_account_id.startswith("wal_")
        return cls(
            id=f"txn_{t.id}",
            kind=t.kind,
            direction="debit" if debit else "credit",
            amount=format_amount(t.amount, currency),
            currency=currency,
            balance_after=format_amount(t.wallet_balance_after, currency),
            reference=t.reference,
            subteam_id=t.subteam_id,
            description=t.description,
            created_at=t.created_at,
        )


class AuthorizationOut(BaseModel):
    allowed: bool
    reason: str
    available: str | None
    currency: str
