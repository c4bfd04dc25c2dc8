"""Test doubles that wrap real parts and record what happened (no mocks of our own code)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from refill.gateway.base import CardDetails, ChargeRequest, ChargeResult, PaymentGateway


@dataclass
class RecordingGateway:
    """Delegates to a real gateway and keeps every charge request and its result."""

    inner: PaymentGateway
    calls: list[tuple[ChargeRequest, ChargeResult]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.inner.name

    def describe_payment_method(self, agency_id: str, token: str) -> CardDetails:
        return self.inner.describe_payment_method(agency_id, token)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        result = self.inner.charge(request)
        with self._lock:
            self.calls.append((request, result))
        return result

    def succeeded_keys(self) -> set[str]:
        with self._lock:
            return {req.idempotency_key for req, res in self.calls if res.succeeded}

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        return self.inner.find_charge(request, payment_id)
