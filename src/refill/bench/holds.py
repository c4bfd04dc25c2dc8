"""`refill bench`'s live calls: placing holds (authorize-hold) and settling them with their
usage (settle), each against hand-written SQL doing the same work (``BaselineSQL``).

At each client count Refill and the baseline have an agency of their own (one wallet, 16
subteams, funded for the whole run, no auto-reload). The holds placed while authorize-hold
is measured are the ones settle then settles; before each of settle's rounds, outside the
timed part, each side's pool is topped up with holds placed the same way, so no settle ever
waits for a hold to exist.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from refill import services
from refill.bench.fixtures import BenchAgency, make_agency
from refill.bench.measure import ROUNDS, Measurement, RoundOver, interleaved
from refill.bootstrap import Refill
from refill.db.schema import holds
from refill.ids import system_account_id
from refill.services.holds import DEFAULT_EXPIRY

if TYPE_CHECKING:
    from refill.bench.runner import Bench

HOLD = 50_000  # 0.05: a call's expected cost, held while it is live
COST = 40_000  # 0.04: what the call cost in the end, settled against its hold
FUNDS = 10**15  # no wallet runs dry, whatever the machine's speed
SUBTEAMS = 16


@dataclass
class _Side:
    """Refill's or the baseline's agency, and the live holds its calls left to settle."""

    agency: BenchAgency
    place: Callable[[int, int], None]  # one call holding credits (adds it to the pool)
    pool: deque[tuple[str, str]] = field(default_factory=deque)  # (hold id, subteam id)
    target: int = 0  # holds in the pool before each settle round
    dry: bool = False  # a client found the pool empty since the last top-up
    dry_rounds: int = 0  # settle rounds cut short by an empty pool

    def subteam(self, n: int, i: int) -> str:
        return self.agency.subteams[(n * 7919 + i) % len(self.agency.subteams)]

    def take(self) -> tuple[str, str]:
        try:
            return self.pool.popleft()  # atomic: clients share the pool
        except IndexError:
            self.dry = True
            raise RoundOver from None

    def round_done(self) -> None:
        if self.dry:
            self.target *= 2
            self.dry_rounds += 1
            self.dry = False

    def top_up(self, numbers: itertools.count[int]) -> None:
        self.round_done()
        while len(self.pool) < self.target:
            self.place(0, next(numbers))


def measure_holds(bench: Bench, refill: Refill) -> None:
    """authorize-hold at every client count, then settle at every client count."""
    sides = {clients: _sides(bench, refill, clients) for clients in bench.config.clients}
    for clients, (mine, theirs) in sides.items():
        _authorize_hold(bench, clients, mine, theirs)
    for clients, (mine, theirs) in sides.items():
        _settle(bench, refill, clients, mine, theirs)


def _sides(bench: Bench, refill: Refill, clients: int) -> tuple[_Side, _Side]:
    tag = f"{bench.run_id}-{clients}"
    ours = make_agency(refill, f"holds-{tag}", subteams=SUBTEAMS, grant=FUNDS)
    base = make_agency(refill, f"holds-base-{tag}", subteams=SUBTEAMS, grant=FUNDS)

    def refill_place(n: int, i: int) -> None:
        subteam = mine.subteam(n, i)
        call = services.authorize_call(
            refill.db,
            agency_id=mine.agency.agency_id,
            subteam_id=subteam,
            expected_cost=HOLD,
            hold=True,
        )
        if call.hold is None:
            raise RuntimeError(f"Refill refused a hold ({call.reason})")
        mine.pool.append((call.hold.id, subteam))

    def baseline_place(n: int, i: int) -> None:
        subteam = theirs.subteam(n, i)
        with bench.raw.connection(n) as conn:
            hold_id = bench.sql.place_hold(
                conn,
                agency_id=theirs.agency.agency_id,
                wallet_id=theirs.agency.wallet_id,
                subteam_id=subteam,
                amount=HOLD,
                lifetime=DEFAULT_EXPIRY,
            )
        if hold_id is None:
            raise RuntimeError("the baseline refused a hold")
        theirs.pool.append((hold_id, subteam))

    mine, theirs = _Side(ours, refill_place), _Side(base, baseline_place)
    return mine, theirs


def _authorize_hold(bench: Bench, clients: int, mine: _Side, theirs: _Side) -> None:
    seconds = bench.config.seconds
    figures = interleaved(
        mine.place, theirs.place, clients, seconds, bench._tick(f"authorize-hold x{clients}")
    )
    for side, figure in zip((mine, theirs), figures, strict=True):
        # Enough for a round of settle at the rate holds were placed (settling does more).
        side.target = math.ceil(figure.throughput * seconds / ROUNDS * 1.25) + 10 * clients
    bench._record(
        "authorize-hold",
        clients,
        *figures,
        "report (baseline: 3 statements)",
        None,
        note="one wallet, 16 subteams; 0.05 held per call",
    )


def _settle(bench: Bench, refill: Refill, clients: int, mine: _Side, theirs: _Side) -> None:
    revenue = system_account_id("usage_revenue", "USD")
    numbers = itertools.count()

    def refill_op(n: int, i: int) -> None:
        hold_id, subteam = mine.take()
        services.record_usage(
            refill.db,
            agency_id=mine.agency.agency_id,
            subteam_id=subteam,
            amount=COST,
            reference=f"settle{clients}-r-{n}-{i}",
            hold_id=hold_id,
        )

    def baseline_op(n: int, i: int) -> None:
        hold_id, subteam = theirs.take()
        with bench.raw.connection(n) as conn:
            bench.sql.settle_hold(
                conn,
                agency_id=theirs.agency.agency_id,
                wallet_id=theirs.agency.wallet_id,
                revenue_id=revenue,
                subteam_id=subteam,
                hold_id=hold_id,
                amount=COST,
                reference=f"settle{clients}-b-{n}-{i}",
            )

    def top_up() -> None:
        mine.top_up(numbers)
        theirs.top_up(numbers)

    figures = interleaved(
        refill_op,
        baseline_op,
        clients,
        bench.config.seconds,
        bench._tick(f"settle x{clients}"),
        prepare=top_up,
    )
    for side, figure in zip((mine, theirs), figures, strict=True):
        side.round_done()
        _check_settled(refill, side, figure)
    dry = mine.dry_rounds + theirs.dry_rounds
    bench._record(
        "settle",
        clients,
        *figures,
        "report (baseline: 5 statements)",
        None,
        note="usage of 0.04 settling a hold of 0.05; holds placed outside the timed part"
        + (f"; {dry} rounds ran out of holds early" if dry else ""),
    )


def _check_settled(refill: Refill, side: _Side, figure: Measurement) -> None:
    """Every operation counted settled a hold (none fell back to plain usage)."""
    settled = refill.db.read(
        lambda tx: tx.conn.execute(
            select(func.count())
            .select_from(holds)
            .where(holds.c.agency_id == side.agency.agency_id, holds.c.status == "settled")
        ).scalar_one()
    )
    if settled != figure.ops:
        raise RuntimeError(f"{figure.ops} settles counted, {settled} holds settled")
