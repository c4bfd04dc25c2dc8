"""Test doubles that wrap real parts and record what happened (no mocks of our own code)."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from refill.gateway.base import (
    CardDetails,
    CardSetup,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    PaymentGateway,
)
from refill.gateway.sandbox import SandboxGateway


@dataclass
class RecordingGateway:
    """Delegates to a real gateway and keeps every charge request and its result."""

    inner: PaymentGateway
    calls: list[tuple[ChargeRequest, ChargeResult]] = field(default_factory=list)
    cancels: list[tuple[ChargeRequest, ChargeResult]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.inner.name

    def create_customer(self, agency_id: str, name: str) -> str | None:
        return self.inner.create_customer(agency_id, name)

    def describe_payment_method(
        self, agency_id: str, token: str, customer: str | None = None
    ) -> CardDetails:
        return self.inner.describe_payment_method(agency_id, token, customer)

    def forget_payment_method(self, token: str) -> None:
        self.inner.forget_payment_method(token)

    def begin_card_setup(self, customer: str | None) -> CardSetup | None:
        return self.inner.begin_card_setup(customer)

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

    def cancel_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult:
        result = self.inner.cancel_charge(request, payment_id)
        with self._lock:
            self.cancels.append((request, result))
        return result

    def authenticate(self, payment_id: str, *, approved: bool) -> None:
        """The sandbox's simulated bank, when the wrapped gateway is the sandbox."""
        assert isinstance(self.inner, SandboxGateway), "only the sandbox has a simulated bank"
        self.inner.authenticate(payment_id, approved=approved)


class GatewayTimeout(Exception):
    """The answer from the gateway never arrived."""


class FaultyGateway(SandboxGateway):
    """A stateful stand-in for a card processor, with faults on command.

    Its "bank" is a SQLite file, so several processes (and a reconciler started after a
    crash) see the same charges. Like Stripe, a charge is idempotent by its key: sending the
    same request again returns the first outcome. Card outcomes come from the sandbox's
    test tokens. Faults, taken from a script (one per call) or drawn at random:

    - ``ok``: normal answer;
    - ``decline``: the bank declines (card_declined, a soft decline);
    - ``lost_request``: times out before reaching the bank (nothing charged);
    - ``late_success``: the bank charges, but the answer is lost (timeout);
    - ``hang_before`` / ``hang_after``: sleep (to be killed) before or after the bank acts.
    """

    name = "sandbox"

    def __init__(
        self,
        bank: Path,
        *,
        script: list[str] | None = None,
        weights: dict[str, float] | None = None,
        seed: int | None = None,
        hang_seconds: float = 3600.0,
    ) -> None:
        self.bank = bank
        self.script = list(script or [])
        self.weights = weights or {}
        self.hang_seconds = hang_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        super().__init__()
        self._sandbox = SandboxGateway()
        with closing(self._connect()) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, token TEXT, "
                "amount INTEGER, currency TEXT, status TEXT, payment_id TEXT, code TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.bank, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _next_fault(self) -> str:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            if not self.weights:
                return "ok"
            faults, weights = zip(*self.weights.items(), strict=True)
            chosen: str = self._rng.choices(faults, weights)[0]
            return chosen

    def _stored(self, conn: sqlite3.Connection, key: str) -> ChargeResult | None:
        row = conn.execute(
            "SELECT status, payment_id, code FROM charges WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return ChargeResult(ChargeStatus(row[0]), row[1], row[2], row[2])

    def charge(self, request: ChargeRequest) -> ChargeResult:
        fault = self._next_fault()
        if fault == "lost_request":
            raise GatewayTimeout("request lost before reaching the bank")
        if fault == "hang_before":
            time.sleep(self.hang_seconds)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            result = self._stored(conn, request.idempotency_key)
            if result is None:
                result = self._sandbox.charge(request)
                if fault == "decline":
                    result = ChargeResult(
                        ChargeStatus.DECLINED, result.payment_id, "card_declined", "Declined."
                    )
                conn.execute(
                    "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.idempotency_key,
                        request.token,
                        request.amount_minor,
                        request.currency,
                        result.status.value,
                        result.payment_id,
                        result.failure_code,
                    ),
                )
            conn.execute("COMMIT")
        if fault == "hang_after":
            time.sleep(self.hang_seconds)
        if fault == "late_success":
            raise GatewayTimeout("the bank acted but the answer was lost")
        return result

    def find_charge(self, request: ChargeRequest, payment_id: str | None) -> ChargeResult | None:
        with closing(self._connect()) as conn:
            return self._stored(conn, request.idempotency_key)

    def succeeded(self) -> dict[str, int]:
        """Idempotency key → amount in minor units, for every charge that took money."""
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT key, amount FROM charges WHERE status = 'succeeded'")
            return dict(rows.fetchall())
