"""The trigger rule is one pure function (``trigger.decide``); its first half is also SQL,
run by the debit that crosses the threshold. On both engines, for any settings, balance,
block and active attempt, the SQL enqueues a reload exactly when the pure rule wants one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from refill import services
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.db.schema import reload_attempts
from refill.ids import new_id, wallet_id_for
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings
from refill.reload.settings_store import write_settings
from refill.reload.states import AttemptStatus, DecisionAction, Mode, SettingsStatus, Trigger
from refill.reload.trigger import RailCounts, decide, trigger_auto_reload, wants_reload

UNIT = 1_000_000
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)

situations = st.fixed_dictionaries(
    {
        "status": st.sampled_from(list(SettingsStatus)),
        "threshold": st.one_of(st.none(), st.integers(0, 60).map(lambda u: u * UNIT)),
        "with_card": st.booleans(),
        "blocked": st.sampled_from([None, "lifted", "holding"]),
        "balance": st.integers(0, 80).map(lambda u: u * UNIT),
        "active_attempt": st.booleans(),
    }
)


def _arrange(refill: Refill, s: dict[str, object]) -> tuple[str, AutoReloadSettings]:
    db = refill.db
    agency, _ = services.create_agency(db, name="Rule")
    card = None
    if s["with_card"]:
        card = services.save_payment_method(
            db, refill.gateway, agency_id=agency.id, token="pm_card_visa", actor="test"
        )[0].id
    blocked_until = {
        None: None,
        "lifted": NOW - timedelta(minutes=1),
        "holding": NOW + timedelta(hours=1),
    }[
        s["blocked"]  # type: ignore[index]
    ]
    chosen = AutoReloadSettings(
        enabled=s["status"] != SettingsStatus.OFF,
        threshold=s["threshold"],  # type: ignore[arg-type]
        reload_amount=100 * UNIT,
        payment_method_id=card,
        status=s["status"],  # type: ignore[arg-type]
        mode=Mode.FIXED,
        blocked_rail="daily_limit" if blocked_until else None,
        blocked_until=blocked_until,
    )
    if s["balance"]:
        services.grant_credits(
            db,
            agency_id=agency.id,
            amount=int(s["balance"]),  # type: ignore[call-overload]
            reference="g",
        )

    def arrange(tx: Tx) -> None:
        write_settings(tx, agency.id, replace(chosen))
        if s["active_attempt"] and card is not None:
            attempt_id = new_id("rld")
            tx.conn.execute(
                insert(reload_attempts).values(
                    id=attempt_id,
                    agency_id=agency.id,
                    wallet_id=wallet_id_for(agency.id),
                    trigger=Trigger.AUTO,
                    status=AttemptStatus.PENDING,
                    amount=5 * UNIT,
                    currency="USD",
                    payment_method_id=card,
                    idempotency_key=f"k-{attempt_id}",
                    created_at=tx.now,
                    updated_at=tx.now,
                )
            )

    db.write(arrange)
    return agency.id, chosen


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(situation=situations)
def test_the_sql_fast_path_enqueues_exactly_when_the_pure_rule_wants_a_reload(
    refill: Refill, situation: dict[str, object]
) -> None:
    refill.db.clock = _Fixed()
    agency_id, chosen = _arrange(refill, situation)
    active = bool(situation["active_attempt"] and situation["with_card"])
    balance = int(situation["balance"])  # type: ignore[call-overload]

    enqueued = refill.db.write(
        lambda tx: trigger_auto_reload(tx, agency_id=agency_id, available=balance, currency="USD")
    )
    rails = RailCounts(0, 0, NOW + timedelta(hours=12), NOW + timedelta(days=30))
    decision = decide(
        ReloadPolicy(),
        chosen,
        available=balance,
        currency="USD",
        active_attempt=active,
        rails=rails,
        now=NOW,
    )

    assert (enqueued is not None) == (wants_reload(chosen, balance, NOW) and not active)
    assert (enqueued is not None) == (decision.action is DecisionAction.RELOAD)


class _Fixed:
    def now(self) -> datetime:
        return NOW
