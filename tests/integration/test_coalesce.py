"""Group commit on the shared wallet, on SQLite and PostgreSQL: many threads send single
usage events to one wallet at once; each gets exactly the answer it would have had alone
(created, duplicate, or its refusal), the groups really form, and the books balance."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from refill import ledger_check, services
from refill.bootstrap import Refill, build
from refill.config import Settings
from refill.errors import RefillError
from refill.services import coalesce
from refill.services.coalesce import UsageCoalescer
from refill.services.usage_batch import UsageEvent

DOLLAR = 1_000_000
THREADS = 16
EACH = 25


@pytest.fixture
def service(db_url: str) -> Iterator[Refill]:
    # On in both engines (by default only on PostgreSQL), so both are proven.
    refill = build(Settings(database_url=db_url, coalesce_usage=True), in_process_worker=False)
    yield refill
    refill.close()


def answer(coalescer: UsageCoalescer, **event: Any) -> tuple[str, str | None]:
    try:
        transfer, created = coalescer.record(**event)
    except RefillError as exc:
        return "refused", exc.code
    return ("created" if created else "duplicate"), str(transfer.reference)


def test_concurrent_single_events_get_their_own_answers_and_form_groups(
    service: Refill,
) -> None:
    db = service.db
    agency, _ = services.create_agency(db, name="Hot")
    subteam = services.create_subteam(db, agency_id=agency.id, name="line").id
    services.grant_credits(db, agency_id=agency.id, amount=1000 * DOLLAR, reference="start")
    services.record_usage(
        db, agency_id=agency.id, subteam_id=subteam, amount=DOLLAR, reference="before"
    )
    coalescer = service.usage
    assert isinstance(coalescer, UsageCoalescer)
    answers: dict[tuple[int, int], tuple[str, str | None]] = {}
    start = threading.Barrier(THREADS)

    def client(n: int) -> None:
        start.wait()
        for i in range(EACH):
            kind = (n + i) % 5
            event: dict[str, Any] = {
                "agency_id": agency.id,
                "subteam_id": subteam,
                "amount": DOLLAR,
                "reference": f"c{n}-{i}",
            }
            if kind == 1:  # a repeat of usage recorded before: duplicate, whatever the order
                event["reference"] = "before"
            elif kind == 2:  # the same reference with another amount: a conflict
                event.update(reference="before", amount=2 * DOLLAR)
            elif kind == 3:
                event["subteam_id"] = "sub_nobody"
            elif kind == 4:  # more than the wallet ever had
                event["amount"] = 5000 * DOLLAR
            answers[n, i] = answer(coalescer, **event)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == THREADS * EACH
    expected = {
        0: ("created", None),
        1: ("duplicate", "before"),
        2: ("refused", "reference_conflict"),
        3: ("refused", "subteam_not_found"),
        4: ("refused", "insufficient_credits"),
    }
    for (n, i), got in answers.items():
        kind = (n + i) % 5
        want = expected[kind] if kind else ("created", f"c{n}-{i}")
        assert got == want, (n, i)
    created = sum(1 for got in answers.values() if got[0] == "created")
    wallet = services.get_wallet(db, service.policy, agency_id=agency.id)
    assert wallet.balance == (1000 - 1 - created) * DOLLAR
    check = db.read(ledger_check.check_ledger)
    assert check.balanced, check
    assert coalescer.groups > 0  # events really went together


def test_a_lone_event_takes_the_single_path(service: Refill) -> None:
    db = service.db
    agency, _ = services.create_agency(db, name="Alone")
    subteam = services.create_subteam(db, agency_id=agency.id, name="line").id
    services.grant_credits(db, agency_id=agency.id, amount=10 * DOLLAR, reference="start")
    coalescer = service.usage
    assert isinstance(coalescer, UsageCoalescer)
    transfer, created = coalescer.record(
        agency_id=agency.id, subteam_id=subteam, amount=DOLLAR, reference=" padded "
    )
    assert created
    assert transfer.reference == "padded"
    assert coalescer.groups == 0
    with pytest.raises(RefillError) as refused:
        coalescer.record(agency_id=agency.id, subteam_id=subteam, amount=0, reference="zero")
    assert refused.value.code == "invalid_amount"


def test_a_group_whose_transaction_fails_answers_each_request_with_the_error_never_created(
    service: Refill, monkeypatch: pytest.MonkeyPatch
) -> None:
    coalescer = service.usage
    assert isinstance(coalescer, UsageCoalescer)
    failure = ConnectionError("the database went away before the commit")

    def dies(*_: Any, **__: Any) -> Any:
        raise failure

    monkeypatch.setattr(coalesce, "record_usage_batch", dies)
    group = [
        coalesce._Request(UsageEvent("sub_x", DOLLAR, f"g{i}"), woken=threading.Event())
        for i in range(3)
    ]
    wallet = coalesce._Wallet(queue=list(group), busy=True)
    coalescer._lead("agc_x", wallet)
    assert [(r.answer, r.error) for r in group] == [(None, failure)] * 3
    assert all(r.woken is not None and r.woken.is_set() for r in group)
    assert (wallet.queue, wallet.busy) == ([], False)  # the lead is given back
