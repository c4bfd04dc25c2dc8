"""Property-based: any sequence of usage, top-ups and settings changes keeps the books right.

Runs on SQLite and PostgreSQL. Each example is a fresh agency in the test's database; the
ledger-wide invariants are checked across every agency in it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from refill import ledger, ledger_check, services
from refill.bootstrap import Refill
from refill.db.database import Tx
from refill.db.schema import reload_attempts, transfers
from refill.errors import InsufficientCredits, PaymentFailed, RefillError
from refill.reload.settings import UNSET, SettingsChange
from refill.reload.states import ACTIVE_STATUSES
from tests.support.doubles import RecordingGateway

CARDS = [
    "pm_card_visa",
    "pm_card_chargeCustomerFail",
    "pm_card_authenticationRequired",
    "pm_card_visa_chargeDeclinedInsufficientFunds",
]

cents = st.integers(min_value=1, max_value=8_000).map(lambda c: c * 10_000)
micros = st.integers(min_value=1, max_value=80_000_000)

operations = st.one_of(
    st.tuples(
        st.just("usage"),
        st.integers(0, 1),
        st.one_of(micros, cents),
        st.sampled_from(["r1", "r2", "r3", "r4", "r5", "r6"]),
    ),
    st.tuples(
        st.just("credit"),
        st.integers(500, 10_000).map(lambda c: c * 10_000),
        st.sampled_from(CARDS),
    ),
    st.tuples(
        st.just("settings"),
        st.booleans(),
        st.integers(0, 5_000).map(lambda c: c * 10_000),
        # Added to the threshold: a reload always lifts the wallet above it.
        st.integers(500, 10_000).map(lambda c: c * 10_000),
        st.sampled_from(CARDS),
    ),
    st.tuples(st.just("cancel_open")),
)


def check_invariants(refill: Refill, gateway: RecordingGateway, agency_id: str) -> None:
    def work(tx: Tx) -> dict[str, Any]:
        check = ledger_check.check_ledger(tx)
        active = tx.conn.execute(
            select(reload_attempts.c.wallet_id, func.count())
            .where(
                reload_attempts.c.trigger == "auto",
                reload_attempts.c.status.in_(ACTIVE_STATUSES),
            )
            .group_by(reload_attempts.c.wallet_id)
        ).all()
        succeeded = dict(
            tx.conn.execute(
                select(reload_attempts.c.id, reload_attempts.c.amount).where(
                    reload_attempts.c.status == "succeeded"
                )
            ).all()
        )
        keys = set(
            tx.conn.execute(
                select(reload_attempts.c.idempotency_key).where(
                    reload_attempts.c.status == "succeeded"
                )
            ).scalars()
        )
        credits = tx.conn.execute(
            select(transfers.c.reference, transfers.c.amount).where(
                transfers.c.kind.in_(["auto_reload", "manual_reload"])
            )
        ).all()
        return {
            "check": check,
            "active": active,
            "succeeded": succeeded,
            "keys": keys,
            "credits": credits,
            "balance": ledger.wallet_balance(tx, agency_id),
        }

    state = refill.db.read(work)
    assert state["check"].balanced, state["check"]
    assert state["balance"] >= 0
    assert all(count == 1 for _, count in state["active"])
    # Every successful charge is credited exactly once, and nothing else is credited.
    assert sorted(ref for ref, _ in state["credits"]) == sorted(state["succeeded"])
    assert dict(state["credits"]) == state["succeeded"]
    assert gateway.succeeded_keys() == state["keys"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(operations, min_size=1, max_size=14))
def test_any_sequence_of_operations_keeps_the_ledger_balanced(
    refill: Refill, gateway: RecordingGateway, steps: list[tuple[Any, ...]]
) -> None:
    db = refill.db
    agency, _ = services.create_agency(db, name="Prop")
    subteams = [services.create_subteam(db, agency_id=agency.id, name=f"s{i}").id for i in (0, 1)]
    saved = [
        services.save_payment_method(db, gateway, agency_id=agency.id, token=t, actor="test")[0]
        for t in CARDS
    ]
    cards = {pm.token: pm.id for pm in saved}
    usage_seen: dict[str, tuple[int, str]] = {}
    for step in steps:
        kind = step[0]
        before = services.get_wallet(db, refill.policy, agency_id=agency.id).balance
        if kind == "usage":
            _, who, amount, ref = step
            subteam = subteams[who]
            try:
                transfer, created = services.record_usage(
                    db,
                    agency_id=agency.id,
                    subteam_id=subteam,
                    amount=amount,
                    reference=ref,
                )
            except InsufficientCredits:
                assert ref not in usage_seen
                assert amount > before
            except RefillError as exc:
                refused_code = exc.code
                assert usage_seen[ref] != (amount, subteam)
                assert refused_code == "reference_conflict"
            else:
                if ref in usage_seen:
                    assert not created
                    assert usage_seen[ref] == (amount, subteam)
                else:
                    assert created
                    assert amount <= before
                    usage_seen[ref] = (amount, subteam)
                assert transfer.amount == usage_seen[ref][0]
        elif kind == "credit":
            _, amount, token = step
            with contextlib.suppress(PaymentFailed):
                services.add_credits(
                    db,
                    refill.processor,
                    agency_id=agency.id,
                    currency="USD",
                    amount=amount,
                    payment_method_id=cards[token],
                    request_key=None,
                )
        elif kind == "settings":
            _, enabled, threshold, above, token = step
            services.update_auto_reload(
                db,
                refill.gateway,
                refill.policy,
                agency_id=agency.id,
                currency="USD",
                change=SettingsChange(
                    enabled=enabled,
                    threshold=threshold,
                    reload_amount=threshold + above,
                    payment_method_id=cards[token] if enabled else UNSET,
                ),
                actor="test",
            )
        else:
            for attempt in services.list_reloads(db, agency_id=agency.id).data:
                if attempt.status == "requires_action":
                    services.cancel_reload(
                        db,
                        refill.gateway,
                        refill.policy,
                        agency_id=agency.id,
                        attempt_id=attempt.id,
                    )
        check_invariants(refill, gateway, agency.id)


@pytest.mark.parametrize("amount", [1, 999_999, 10_000_000], ids=["one-micro", "sub-unit", "ten"])
def test_usage_exactly_equal_to_the_balance_empties_the_wallet(refill: Refill, amount: int) -> None:
    db = refill.db
    agency, _ = services.create_agency(db, name="Exact")
    subteam = services.create_subteam(db, agency_id=agency.id, name="s").id

    services.grant_credits(db, agency_id=agency.id, amount=amount, reference="g")
    services.record_usage(db, agency_id=agency.id, subteam_id=subteam, amount=amount, reference="u")
    assert services.get_wallet(db, refill.policy, agency_id=agency.id).balance == 0
    with pytest.raises(InsufficientCredits):
        services.record_usage(db, agency_id=agency.id, subteam_id=subteam, amount=1, reference="v")
