"""Request and response bodies. Amounts travel as decimal strings, never JSON numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

from refill.audit import AuditEntry
from refill.cards import PaymentMethod
from refill.ledger import Transfer
from refill.money import format_amount
from refill.reload.attempt import ReloadAttempt
from refill.reload.card_list import MAX_CARDS
from refill.reload.policy import MAX_DAILY_LIMIT
from refill.services import ApiKey, Subteam

T = TypeVar("T")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain a NUL character")
    return value


# Every string a client sends: PostgreSQL cannot store a NUL, and no name or id has one.
Text = Annotated[StrictStr, AfterValidator(_no_nul)]

_AMOUNT_DOC = 'A decimal string in the currency unit, such as "25.00" (at most 6 decimals).'
# What ``money.parse_amount`` accepts, declared for generated clients (the API checks it
# itself, so that a refusal keeps its own code, ``invalid_amount``).
AMOUNT_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$"


def amount_field(**kwargs: Any) -> Any:
    return Field(
        max_length=40,
        description=_AMOUNT_DOC,
        examples=["25.00"],
        json_schema_extra={"pattern": AMOUNT_PATTERN},
        **kwargs,
    )


def fmt(micros: int | None, currency: str | None) -> str | None:
    return None if micros is None else format_amount(micros, currency)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubteamCreate(Body):
    name: Text = Field(min_length=1, max_length=200)


class PaymentMethodCreate(Body):
    token: Text = Field(
        min_length=1,
        max_length=255,
        description="A gateway PaymentMethod id, e.g. pm_card_visa in sandbox or test mode.",
    )


class AutoReloadUpdate(Body):
    """Fields left out keep their saved value; null clears an optional one."""

    enabled: StrictBool | None = None
    threshold: Text | None = amount_field(default=None)
    reload_amount: Text | None = amount_field(default=None)
    payment_method_id: Text | None = Field(
        default=None,
        max_length=40,
        description="The card to charge: a shorthand for payment_method_ids with one card "
        "(it replaces the whole list).",
    )
    payment_method_ids: list[Annotated[Text, Field(max_length=40)]] | None = Field(
        default=None,
        max_length=MAX_CARDS,
        description="The cards to charge, in order: the first is the primary, the others "
        "backups, each charged only after the one before was declined. Naming a card clears "
        "its skip (a hard decline). Give this or payment_method_id, not both.",
    )
    mode: Literal["fixed", "target"] | None = Field(
        default=None,
        description="fixed (the default): add reload_amount; target: bring the balance up to "
        "target_balance.",
    )
    target_balance: Text | None = amount_field(default=None)
    monthly_cap: Text | None = amount_field(
        default=None, title="Cap on auto-reload spend per calendar month (agency time zone)"
    )
    daily_limit: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_DAILY_LIMIT,
        description=f"Auto-reloads per day (default 10, at most {MAX_DAILY_LIMIT}).",
    )


class CreditsCreate(Body):
    amount: Text = amount_field()
    payment_method_id: Text = Field(max_length=40)


class UsageCreate(Body):
    subteam_id: Text = Field(max_length=40)
    amount: Text = amount_field()
    reference: Text = Field(
        min_length=1,
        max_length=255,
        description="Your unique id for this usage; repeating it returns the first result.",
    )
    description: Text | None = Field(default=None, max_length=500)
    hold_id: Text | None = Field(
        default=None,
        max_length=40,
        description="Settles the live call this hold was placed for (POST /v1/calls/authorize "
        "with hold): the hold is released and the usage debited together, never refused while "
        "the hold is active; what the wallet cannot cover is recorded as uncovered. An expired "
        "or released hold settles as plain usage.",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None,
        strict=False,
        description="When the call happened, if it is reported late (ISO 8601 with an "
        "offset): it lands on that day in usage charts, spend limits and history. Not in "
        "the future, and at most REFILL_USAGE_BACKFILL_DAYS (7) days ago; the ledger's "
        "created_at stays the time of recording.",
    )


class KeyCreate(Body):
    subteam_id: Text | None = Field(
        default=None, max_length=40, description="A key for this subteam; none: an owner key."
    )
    name: Text | None = Field(default=None, max_length=100)


class SubteamKeyCreate(Body):
    name: Text | None = Field(default=None, max_length=100)


class KeyRoll(Body):
    expires_in_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description="How long the old key keeps working (at most 7 days; 0: stops now).",
    )


class AuthorizeRequest(Body):
    subteam_id: Text = Field(max_length=40)
    expected_cost: Text | None = amount_field(
        default=None,
        title="What the call is expected to cost: allowed when available credits cover it",
    )
    hold: StrictBool = Field(
        default=False,
        description="Hold expected_cost for this call (required with it) until usage with "
        "its hold_id settles the call, it is released, or it expires.",
    )
    hold_expires_in_seconds: StrictInt | None = Field(
        default=None, ge=1, le=86_400, description="Default 7200 (2 hours), at most 24 hours."
    )


class ListOf(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class SubteamOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    archived_at: datetime | None = Field(description="Archived: usage and calls refused.")
    paused: bool = Field(description="Paused by the owner: new calls and usage refused.")
    paused_at: datetime | None
    daily_spend_limit: str | None = Field(description="Per day in the agency's time zone.")
    monthly_spend_limit: str | None = Field(description="Per calendar month, agency time zone.")
    spent_today: str
    spent_this_month: str
    held: str = Field(description="Held by its live calls (counts toward its limits).")
    currency: str

    @classmethod
    def of(cls, t: Subteam, currency: str) -> SubteamOut:
        return cls(
            id=t.id,
            name=t.name,
            created_at=t.created_at,
            archived_at=t.archived_at,
            paused=t.paused,
            paused_at=t.paused_at,
            daily_spend_limit=fmt(t.daily_spend_limit, currency),
            monthly_spend_limit=fmt(t.monthly_spend_limit, currency),
            spent_today=format_amount(t.spent_today, currency),
            spent_this_month=format_amount(t.spent_this_month, currency),
            held=format_amount(t.held, currency),
            currency=currency,
        )


class KeyOut(BaseModel):
    id: str
    api_key: str = Field(description="Shown once; store it now.")


class ApiKeyOut(BaseModel):
    id: str
    role: str
    subteam_id: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="Within a minute.")
    revoked_at: datetime | None
    expires_at: datetime | None = Field(description="A rolled key stops working then.")

    @classmethod
    def of(cls, k: ApiKey) -> ApiKeyOut:
        return cls(
            id=k.id,
            role=k.role,
            subteam_id=k.subteam_id,
            name=k.name,
            created_at=k.created_at,
            last_used_at=k.last_used_at,
            revoked_at=k.revoked_at,
            expires_at=k.expires_at,
        )


class RolledKeyOut(BaseModel):
    id: str
    api_key: str = Field(description="The new secret, shown once; store it now.")
    previous: ApiKeyOut


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


class ReloadOut(BaseModel):
    id: str
    trigger: str
    amount: str
    currency: str
    status: str
    payment_method_id: str
    failure_code: str | None
    failure_message: str | None
    next_action: dict[str, str] | None = Field(
        description="requires_action: what the owner must do to finish the payment."
    )
    retry_of: str | None = Field(
        description="The declined reload this one follows: on the next card at once (a "
        "backup), or on the first card again later (a retry of the chain)."
    )
    retry_number: int = Field(description="Which round of the soft-decline schedule (0: first).")
    not_before: datetime | None = Field(description="A retry waits until then.")
    blocked_until: datetime | None = Field(description="blocked: when the rail lifts.")
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
            next_action=a.next_action,
            retry_of=a.previous_attempt_id,
            retry_number=a.retry_number,
            not_before=a.not_before,
            blocked_until=a.blocked_until,
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
    uncovered: str | None = Field(
        default=None,
        description="Usage settling a hold: the part of its cost the wallet could not cover.",
    )
    created_at: datetime
    occurred_at: datetime = Field(
        description="When it happened: created_at, except usage reported late."
    )

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
            uncovered=fmt(t.uncovered, currency),
            created_at=t.created_at,
            occurred_at=t.happened_at,
        )


class AuthorizationOut(BaseModel):
    allowed: bool
    reason: str = Field(
        description="credits_available, no_credits, subteam_paused or subteam_limit_reached."
    )
    available: str | None = Field(description="Available credits, after any hold placed.")
    currency: str
    hold_id: str | None = Field(default=None, description="Set when a hold was placed.")
    hold_expires_at: datetime | None = None


class AuditOut(BaseModel):
    id: str
    actor: str
    action: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id,
            actor=e.actor,
            action=e.action,
            target_id=e.target_id,
            before=e.before,
            after=e.after,
            created_at=e.created_at,
        )
