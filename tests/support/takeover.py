"""How fast auto-reload recovers when the process charging a card is killed (SIGKILL).

The scene, on one database with real processes:

- this process sends usage at a steady rate (``rate`` events a second of 0.10 each) and
  counts the ones refused for want of credits;
- a **survivor** `refill worker` runs the whole time (poller and reconciler);
- when the usage crosses the threshold, a **doomed** process claims the reload and calls
  the gateway, which holds the call (the bank has acted: Stripe created the PaymentIntent,
  the sandbox decided); the doomed process is then killed with SIGKILL.

Measured: the seconds from the SIGKILL to the credit, and the usage refused meanwhile.
Checked: exactly one credit, and (Stripe) one PaymentIntent for the attempt.

``python -m tests.support.takeover --gateway sandbox|stripe`` prints the figures (it uses
the PostgreSQL test server unless ``--database`` says otherwise); the test suite runs the
same scene with a short lease and asserts only what is exact.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from refill import services
from refill.bootstrap import build
from refill.config import Settings
from refill.db.database import create_db_engine
from refill.db.migrate import upgrade
from refill.db.schema import reload_attempts, transfers
from refill.errors import InsufficientCredits
from refill.reload.settings import SettingsChange

REFILL = str(Path(sys.executable).parent / "refill")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
USAGE = 100_000  # 0.10 per event


@dataclass
class Figures:
    gateway: str
    database: str
    rate_per_s: float
    seconds_to_credit: float | None
    refused_meanwhile: int
    sent_meanwhile: int
    credits: int
    payment_intents: int | None
    notes: list[str] = field(default_factory=list)


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    name = f"refill_takeover_{secrets.token_hex(4)}"
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _doomed(db_url: str, env: dict[str, str], attempt_id: str, bank: str | None) -> None:
    """The charging process: claims the attempt and hangs inside the gateway call."""
    os.environ.update(env)
    gateway = None
    if bank is not None:
        from tests.support.doubles import FaultyGateway

        gateway = FaultyGateway(Path(bank), script=["hang_after"])
    service = build(Settings(database_url=db_url), gateway=gateway, in_process_worker=False)
    service.processor.process(attempt_id)


class Usage(threading.Thread):
    """Steady usage; remembers when each refusal happened."""

    def __init__(self, refill: Any, agency_id: str, subteam_id: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.refill, self.agency_id, self.subteam_id = refill, agency_id, subteam_id
        self.interval = 1.0 / rate
        self.sent: list[float] = []
        self.refused: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set() and n < 1_000_000:
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += self.interval
            n += 1
            self.sent.append(time.monotonic())
            try:
                services.record_usage(
                    self.refill.db,
                    agency_id=self.agency_id,
                    subteam_id=self.subteam_id,
                    amount=USAGE,
                    reference=f"takeover-{n}",
                )
            except InsufficientCredits:
                self.refused.append(time.monotonic())


def run(
    db_url: str,
    *,
    gateway: str,
    rate: float = 50.0,
    give_up_after: float = 180.0,
    extra_env: dict[str, str] | None = None,
    stripe_base: str | None = None,
    work_dir: Path,
) -> Figures:
    """One scene. ``stripe_base``: localstripe's address (the proxy is put in front here)."""
    env = {"REFILL_DATABASE_URL": db_url, **(extra_env or {})}
    proxy = None
    bank: str | None = None
    gateway_obj: Any = None
    if gateway == "stripe":
        from tests.support.stripe_peer import API_KEY, WEBHOOK_SECRET
        from tests.support.stripe_proxy import IdempotentStripeProxy

        assert stripe_base is not None
        proxy = IdempotentStripeProxy(stripe_base)
        env.update(
            REFILL_GATEWAY="stripe",
            REFILL_STRIPE_API_KEY=API_KEY,
            REFILL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            REFILL_STRIPE_API_BASE=proxy.base,
        )
    else:
        from tests.support.doubles import FaultyGateway

        bank = str(work_dir / "bank.db")
        gateway_obj = FaultyGateway(Path(bank))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        refill = build(Settings(database_url=db_url), gateway=gateway_obj, in_process_worker=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    notes: list[str] = []
    survivor = None
    usage = None
    try:
        agency, _ = services.create_agency(refill.db, name="Takeover")
        subteam = services.create_subteam(refill.db, agency_id=agency.id, name="line")
        token = "pm_card_visa"
        if gateway == "stripe":
            from tests.support.stripe_peer import LocalStripe

            token = LocalStripe.card_on(stripe_base or "", "4242424242424242")
        card, _ = services.save_payment_method(
            refill.db, refill.gateway, agency_id=agency.id, token=token, actor="takeover"
        )
        services.grant_credits(refill.db, agency_id=agency.id, amount=25_000_000, reference="g")
        services.update_auto_reload(
            refill.db,
            refill.gateway,
            refill.policy,
            agency_id=agency.id,
            currency="USD",
            actor="takeover",
            change=SettingsChange(
                enabled=True,
                threshold=20_000_000,
                reload_amount=50_000_000,
                payment_method_id=card.id,
            ),
        )
        log = open(work_dir / "survivor.log", "w")  # noqa: SIM115
        survivor = subprocess.Popen(
            [REFILL, "worker"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        usage = Usage(refill, agency.id, subteam.id, rate)
        usage.start()

        def pending() -> str | None:
            return refill.db.read(
                lambda tx: tx.conn.execute(
                    select(reload_attempts.c.id).where(
                        reload_attempts.c.agency_id == agency.id,
                        reload_attempts.c.status == "pending",
                    )
                ).scalar()
            )

        attempt_id = _wait(pending, 30, "the usage never crossed the threshold")
        if proxy is not None:
            proxy.arm("/v1/payment_intents", "after", seconds=give_up_after + 60)
        ctx = multiprocessing.get_context("spawn")
        doomed = ctx.Process(target=_doomed, args=(db_url, env, attempt_id, bank))
        doomed.start()

        def status() -> str:
            return str(
                refill.db.read(
                    lambda tx: tx.conn.execute(
                        select(reload_attempts.c.status).where(reload_attempts.c.id == attempt_id)
                    ).scalar()
                )
            )

        def bank_acted() -> bool:
            if proxy is not None:
                return proxy.forwarded["/v1/payment_intents"] >= 1
            assert gateway_obj is not None
            return bool(gateway_obj.succeeded())

        _wait(lambda: status() == "charging" and bank_acted(), 30, "never reached the bank")
        time.sleep(0.2)
        doomed.kill()
        killed_at = time.monotonic()
        doomed.join(10)

        def credited() -> bool:
            return status() == "succeeded"

        deadline = killed_at + give_up_after
        credited_at = None
        while time.monotonic() < deadline:
            if credited():
                credited_at = time.monotonic()
                break
            time.sleep(0.05)
        if credited_at is None:
            notes.append(f"not credited {give_up_after:.0f} s after the kill (still {status()})")
        end = credited_at if credited_at is not None else time.monotonic()
        usage.stop.set()
        usage.join(10)
        credits = refill.db.read(
            lambda tx: tx.conn.execute(
                select(transfers.c.id).where(
                    transfers.c.agency_id == agency.id, transfers.c.reference == attempt_id
                )
            ).all()
        )
        intents = None
        if gateway == "stripe":
            from tests.support.stripe_peer import LocalStripe

            intents = len(LocalStripe.intents_on(stripe_base or "", refill_reload_id=attempt_id))
        return Figures(
            gateway=gateway,
            database=refill.db.dialect,
            rate_per_s=rate,
            seconds_to_credit=None if credited_at is None else round(credited_at - killed_at, 2),
            refused_meanwhile=sum(killed_at <= t <= end for t in usage.refused),
            sent_meanwhile=sum(killed_at <= t <= end for t in usage.sent),
            credits=len(credits),
            payment_intents=intents,
            notes=notes,
        )
    finally:
        if usage is not None:
            usage.stop.set()
        if survivor is not None:
            survivor.send_signal(signal.SIGTERM)
            try:
                survivor.wait(20)
            except subprocess.TimeoutExpired:
                survivor.kill()
        refill.close()
        if proxy is not None:
            proxy.stop()


def _wait(check: Any, seconds: float, why: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(why)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", choices=["sandbox", "stripe"], default="sandbox")
    parser.add_argument(
        "--database", default=os.environ.get("REFILL_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--give-up-after", type=float, default=180.0)
    args = parser.parse_args()
    import tempfile

    from tests.support.stripe_peer import LocalStripe

    peer = LocalStripe() if args.gateway == "stripe" else None
    try:
        with fresh_postgres(args.database) as url, tempfile.TemporaryDirectory() as tmp:
            figures = run(
                url,
                gateway=args.gateway,
                rate=args.rate,
                give_up_after=args.give_up_after,
                stripe_base=peer.base if peer else None,
                work_dir=Path(tmp),
            )
    finally:
        if peer is not None:
            peer.stop()
    print(json.dumps(asdict(figures)))  # noqa: T201  the measurement's output


if __name__ == "__main__":
    main()
