"""`refill serve --demo`: a seeded agency and simulated call traffic.

A newcomer sees Auto Reload happen within the first minute: the wallet starts with 25.00 of
granted credits, a call finishes every two seconds at 0.01 a second of talk time (about
0.60 a call, 1,080.00 an hour), and Auto Reload adds 100.00 when the balance drops below
20.00, so the first reload comes after about 20 seconds. At about 11 reloads an hour the
demo runs for more than four hours before it meets its limit of 50 reloads a day, so a
demo left alone keeps its subteams taking calls (``tests/integration/test_demo_hour.py``).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import select

from refill import services
from refill.bootstrap import Refill
from refill.db.schema import agencies
from refill.errors import InsufficientCredits, NotFound
from refill.money import format_amount, parse_amount
from refill.reload.settings import SettingsChange
from refill.roles import MemberRole
from refill.services import members, resets

log = logging.getLogger("refill.demo")

DEMO_AGENCY = "Demo Agency"
DEMO_OWNER = "owner@demo.refill.test"
SUBTEAMS = ("Inbound Sales", "Customer Support", "Outbound Campaigns")
DEMO_DAILY_LIMIT = 50
COST_PER_SECOND = 10_000  # 0.01 a second of call


@dataclass(frozen=True)
class DemoAgency:
    agency_id: str
    api_key: str
    subteam_ids: tuple[str, ...]
    owner_email: str
    owner_password: str


def seed_demo(refill: Refill) -> DemoAgency:
    """Create the demo agency once; on later starts reuse it and issue a fresh owner key."""
    db = refill.db
    existing = db.read(
        lambda tx: tx.conn.execute(
            select(agencies.c.id).where(agencies.c.name == DEMO_AGENCY).order_by(agencies.c.id)
        ).scalar()
    )
    # A fresh password on every start: only its hash is stored, and it is printed once.
    password = secrets.token_urlsafe(12)
    if existing is not None:
        key = services.create_owner_key(db, agency_id=existing)
        subteams = services.list_subteams(db, agency_id=existing)
        try:
            resets.set_password(db, email=DEMO_OWNER, password=password)
        except NotFound:  # a demo database from before the billing page had users
            members.add_member(
                db,
                agency_id=existing,
                email=DEMO_OWNER,
                role=MemberRole.OWNER,
                password=password,
                actor="cli",
                attach_existing=True,
            )
        return DemoAgency(
            existing, key.secret, tuple(t.id for t in subteams.data), DEMO_OWNER, password
        )

    agency, key = services.create_agency(db, name=DEMO_AGENCY, currency="USD")
    members.add_member(
        db,
        agency_id=agency.id,
        email=DEMO_OWNER,
        role=MemberRole.OWNER,
        password=password,
        actor="cli",
        attach_existing=True,
    )
    subteam_ids = tuple(
        services.create_subteam(db, agency_id=agency.id, name=name).id for name in SUBTEAMS
    )

    services.grant_credits(
        db,
        agency_id=agency.id,
        amount=parse_amount("25.00"),
        reference="demo-welcome-credit",
        description="Demo welcome credit",
    )
    card, _ = services.save_payment_method(
        db,
        refill.gateway,
        agency_id=agency.id,
        token="pm_card_visa",  # noqa: S106  a sandbox test card, not a secret
        actor="cli",
    )
    services.update_auto_reload(
        db,
        refill.gateway,
        refill.policy,
        agency_id=agency.id,
        currency="USD",
        change=SettingsChange(
            enabled=True,
            threshold=parse_amount("20.00"),
            reload_amount=parse_amount("100.00"),
            payment_method_id=card.id,
            daily_limit=DEMO_DAILY_LIMIT,
        ),
        actor="cli",
    )
    return DemoAgency(agency.id, key.secret, subteam_ids, DEMO_OWNER, password)


class DemoTraffic:
    """Simulated calls: every couple of seconds a subteam finishes a call and is billed."""

    def __init__(self, refill: Refill, demo: DemoAgency, *, interval: float = 2.0) -> None:
        self.refill = refill
        self.demo = demo
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refill-demo", daemon=True)
        self._rng = random.Random()  # noqa: S311  simulated calls, not a secret
        self.calls = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.place_call()
            except Exception:
                log.exception("demo traffic failed")

    def place_call(self) -> bool:
        """One simulated call, billed to a random subteam; False when it was refused."""
        subteam = self._rng.choice(self.demo.subteam_ids)
        seconds = self._rng.randint(20, 100)
        cost = seconds * COST_PER_SECOND
        self.calls += 1
        try:
            transfer, _ = services.record_usage(
                self.refill.db,
                agency_id=self.demo.agency_id,
                subteam_id=subteam,
                amount=cost,
                reference=f"demo-call-{self._rng.getrandbits(64):016x}",
                description=f"{seconds}s call",
            )
        except InsufficientCredits:
            log.warning("call %d refused: no credits", self.calls)
            return False
        log.info(
            "call %d: %ds billed %s, balance %s",
            self.calls,
            seconds,
            format_amount(cost, "USD"),
            format_amount(transfer.wallet_balance_after, "USD"),
        )
        return True
