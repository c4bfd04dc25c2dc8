"""Bodies of the notification resources: events, webhook endpoints and their deliveries,
the wallet's alert level, receipts, and the agency's billing details."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictBool

from refill.api.schemas import AMOUNT_PATTERN, Body, Text, amount_field, fmt
from refill.money import format_amount
from refill.notify.events import Event, EventType
from refill.notify.receipts import Receipt
from refill.services import Agency
from refill.services.agencies import MAX_BILLING_EMAILS
from refill.services.notifications import Delivery, Endpoint

EVENT_TYPES = ", ".join(f"`{t.value}`" for t in EventType if t is not EventType.PING)


class EventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(id=e.id, type=e.type, created_at=e.created_at, data=e.data)


class EndpointCreate(Body):
    url: Text = Field(max_length=2000, examples=["https://example.com/refill-webhooks"])
    events: list[Text] = Field(
        min_length=1, max_length=50, description=f'Event types, or `["*"]`: {EVENT_TYPES}.'
    )
    description: Text | None = Field(default=None, max_length=500)


class EndpointUpdate(Body):
    url: Text | None = Field(default=None, max_length=2000)
    events: list[Text] | None = Field(default=None, min_length=1, max_length=50)
    enabled: StrictBool | None = None
    description: Text | None = Field(default=None, max_length=500)


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, e: Endpoint) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            events=e.event_types,
            enabled=e.enabled,
            description=e.description,
            disabled_reason=e.disabled_reason,
            failing_since=e.failing_since,
            created_at=e.created_at,
        )


class EndpointWithSecretOut(EndpointOut):
    secret: str = Field(
        description="Signs every delivery (Standard Webhooks). Shown only now: keep it."
    )

    @classmethod
    def with_secret(cls, e: Endpoint, secret: str) -> EndpointWithSecretOut:
        return cls(**EndpointOut.of(e).model_dump(), secret=secret)


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    status: str = Field(description='"pending", "succeeded" or "failed".')
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=d.event_id,
            status=d.status,
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            next_attempt_at=d.next_attempt_at,
            created_at=d.created_at,
        )


class AlertsUpdate(Body):
    low_balance_alert: Text | None = Field(
        max_length=40,
        description="Tell the owner when the balance falls below this amount, whether "
        "auto-reload is on or off (null: the auto-reload threshold while auto-reload is off, "
        "suspended or blocked).",
        examples=["20.00"],
        json_schema_extra={"pattern": AMOUNT_PATTERN},
    )


class AlertsOut(BaseModel):
    low_balance_alert: str | None
    currency: str


class ReceiptOut(BaseModel):
    number: str = Field(examples=["R-000001"])
    reload_id: str
    issued_at: datetime
    date: dt.date = Field(description="The day of the charge in the agency's time zone.")
    timezone: str
    agency_name: str
    billing_address: str | None
    tax_id: str | None
    description: str
    amount: str
    currency: str
    card_brand: str
    card_last4: str

    @classmethod
    def of(cls, r: Receipt) -> ReceiptOut:
        return cls(
            number=r.label,
            reload_id=r.attempt_id,
            issued_at=r.issued_at,
            date=dt.date.fromisoformat(r.local_date),
            timezone=r.timezone,
            agency_name=r.agency_name,
            billing_address=r.billing_address,
            tax_id=r.tax_id,
            description=r.description,
            amount=fmt(r.amount, r.currency) or "0",
            currency=r.currency,
            card_brand=r.card_brand,
            card_last4=r.card_last4,
        )


class AgencyUpdate(Body):
    timezone: Text | None = Field(
        default=None, max_length=64, description="IANA time zone for daily and monthly limits."
    )
    billing_emails: list[Text] | None = Field(
        default=None,
        max_length=MAX_BILLING_EMAILS,
        description="Who else receives billing e-mail (besides owners and admins).",
    )
    billing_address: Text | None = Field(
        default=None, max_length=500, description="Printed on receipts issued from now on."
    )
    tax_id: Text | None = Field(
        default=None, max_length=64, description="Printed on receipts issued from now on."
    )
    min_call_balance: Text | None = amount_field(
        default=None,
        title="Calls are authorized while available credits are above this (default 0.00)",
    )


class AgencyOut(BaseModel):
    id: str
    name: str
    currency: str
    timezone: str
    billing_emails: list[str]
    billing_address: str | None
    tax_id: str | None
    low_balance_alert: str | None
    min_call_balance: str
    created_at: datetime

    @classmethod
    def of(cls, a: Agency) -> AgencyOut:
        return cls(
            id=a.id,
            name=a.name,
            currency=a.currency,
            timezone=a.timezone,
            billing_emails=a.billing_emails,
            billing_address=a.billing_address,
            tax_id=a.tax_id,
            low_balance_alert=fmt(a.low_balance_alert, a.currency),
            min_call_balance=format_amount(a.min_call_balance, a.currency),
            created_at=a.created_at,
        )
