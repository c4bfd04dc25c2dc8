"""`auto_reload.state` on `GET /v1/wallet`: the first of off, suspended, action_required,
blocked, retrying, active that applies, with what the owner needs to act; "retry now";
and a payment waiting for 3-D Secure settled when the owner comes back or the reconciler
looks, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill, build
from refill.clock import FrozenClock
from refill.config import Settings
from refill.errors import Conflict
from refill.gateway.sandbox import SandboxGateway
from refill.reload.settings import SettingsChange
from refill.reload.states import AttemptStatus
from refill.web import create_app

USD = 1_000_000


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Refill, FrozenClock, SandboxGateway]]:
    clock = FrozenClock(datetime(2026, 5, 4, 9, 0, tzinfo=UTC))
    gateway = SandboxGateway(clock)
    service = build(
        Settings(database_url=db_url), gateway=gateway, clock=clock, in_process_worker=False
    )
    service.process_new_attempts_inline()
    yield service, clock, gateway
    service.close()


def owner(refill: Refill, token: str, **change: object) -> tuple[TestClient, str, str]:
    """An agency with an owner key and a card, auto-reload enabled (an empty wallet: the
    reload is charged at once)."""
    agency, key = services.create_agency(refill.db, name="State Agency")
    card, _ = services.save_payment_method(
        refill.db, refill.gateway, agency_id=agency.id, token=token, actor="test"
    )
    settings = {
        "enabled": True,
        "threshold": 20 * USD,
        "reload_amount": 50 * USD,
        "payment_method_id": card.id,
        **change,
    }
    services.update_auto_reload(
        refill.db,
        refill.gateway,
        refill.policy,
        agency_id=agency.id,
        currency="USD",
        change=SettingsChange(**settings),  # type: ignore[arg-type]
        actor="test",
    )
    api = TestClient(create_app(refill), headers={"Authorization": f"Bearer {key.secret}"})
    return api, agency.id, card.id


def auto_reload(api: TestClient) -> dict[str, object]:
    response = api.get("/v1/wallet")
    assert response.status_code == 200
    body: dict[str, object] = response.json()["auto_reload"]
    return body


@pytest.mark.parametrize(
    ("token", "state", "status", "code"),
    [
        pytest.param("pm_card_visa", "active", "active", None, id="active"),
        pytest.param(
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "retrying",
            "active",
            "insufficient_funds",
            id="soft-decline-retrying",
        ),
        pytest.param(
            "pm_card_chargeDeclinedExpiredCard", "suspended", "suspended", "expired_card", id="hard"
        ),
        pytest.param(
            "pm_card_authenticationRequired", "action_required", "active", None, id="3-d-secure"
        ),
    ],
)
def test_the_state_says_what_happened_while_the_status_stays_as_clients_know_it(
    world: tuple[Refill, FrozenClock, SandboxGateway],
    token: str,
    state: str,
    status: str,
    code: str | None,
) -> None:
    refill, clock, _ = world
    api, _, _ = owner(refill, token)

    shown = auto_reload(api)

    assert (shown["state"], shown["status"]) == (state, status)
    failure = shown["last_failure"]
    assert (failure or {}).get("code") == code  # type: ignore[attr-defined]
    if state == "retrying":
        retry_at = datetime.fromisoformat(str(shown["next_retry_at"]).replace("Z", "+00:00"))
        assert retry_at == clock.now() + timedelta(hours=1)
        assert shown["waiting_reload_id"]
    else:
        assert shown["next_retry_at"] is None
    if state == "action_required":
        waiting = api.get(f"/v1/reloads/{shown['waiting_reload_id']}").json()
        assert waiting["status"] == "requires_action"


def test_a_new_wallet_is_off_and_a_rail_shows_as_blocked_with_until_when(
    world: tuple[Refill, FrozenClock, SandboxGateway],
) -> None:
    refill, _, _ = world
    _, key = services.create_agency(refill.db, name="Quiet")
    api = TestClient(create_app(refill), headers={"Authorization": f"Bearer {key.secret}"})
    assert auto_reload(api)["state"] == "off"

    api, agency_id, _ = owner(refill, "pm_card_visa", daily_limit=1)
    subteam = services.create_subteam(refill.db, agency_id=agency_id, name="calls")
    services.record_usage(
        refill.db, agency_id=agency_id, subteam_id=subteam.id, amount=35 * USD, reference="u1"
    )
    shown = auto_reload(api)
    assert (shown["state"], shown["status"]) == ("blocked", "active")
    assert shown["blocked"] == {"rail": "daily_limit", "until": "2026-05-05T00:00:00Z"}


def test_retry_now_charges_the_waiting_retry_at_once_and_409_when_none_waits(
    world: tuple[Refill, FrozenClock, SandboxGateway],
) -> None:
    refill, _, _ = world
    api, agency_id, _ = owner(refill, "pm_card_visa_chargeDeclinedInsufficientFunds")
    waiting = auto_reload(api)["waiting_reload_id"]

    retried = api.post("/v1/wallet/auto-reload/retry")

    assert retried.status_code == 200
    assert (retried.json()["id"], retried.json()["status"]) == (waiting, "failed")
    after = auto_reload(api)
    assert after["state"] == "retrying"
    assert after["waiting_reload_id"] not in (None, waiting)  # the next retry, at its time
    reloads = services.list_reloads(refill.db, agency_id=agency_id).data
    assert [r.retry_number for r in reloads] == [2, 1, 0]

    services.update_auto_reload(
        refill.db,
        refill.gateway,
        refill.policy,
        agency_id=agency_id,
        currency="USD",
        change=SettingsChange(enabled=False),
        actor="test",
    )
    refused = api.post("/v1/wallet/auto-reload/retry")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "no_retry_waiting"


def test_a_payment_authenticated_elsewhere_is_credited_once_by_the_reconciler_after_5_minutes(
    world: tuple[Refill, FrozenClock, SandboxGateway],
) -> None:
    refill, clock, gateway = world
    api, agency_id, _ = owner(refill, "pm_card_authenticationRequired")
    waiting = services.get_reload(
        refill.db, agency_id=agency_id, attempt_id=str(auto_reload(api)["waiting_reload_id"])
    )
    assert waiting.gateway_payment_id is not None
    gateway.authenticate(waiting.gateway_payment_id, approved=True)  # no webhook comes

    refill.processor.run_due_work()
    assert services.get_wallet(refill.db, refill.policy, agency_id=agency_id).balance == 0
    clock.advance(timedelta(minutes=5, seconds=1))
    refill.processor.run_due_work()
    refill.processor.run_due_work()

    settled = services.get_reload(refill.db, agency_id=agency_id, attempt_id=waiting.id)
    assert settled.status is AttemptStatus.SUCCEEDED
    assert services.get_wallet(refill.db, refill.policy, agency_id=agency_id).balance == 50 * USD
    assert auto_reload(api)["state"] == "active"


@pytest.mark.parametrize(
    ("approved", "status", "balance"),
    [
        pytest.param(True, AttemptStatus.SUCCEEDED, 50 * USD, id="approved"),
        pytest.param(False, AttemptStatus.FAILED, 0, id="declined"),
    ],
)
def test_the_simulated_bank_settles_the_payment_at_once_and_only_once(
    world: tuple[Refill, FrozenClock, SandboxGateway],
    approved: bool,
    status: AttemptStatus,
    balance: int,
) -> None:
    refill, _, gateway = world
    api, agency_id, _ = owner(refill, "pm_card_authenticationRequired")
    reload_id = str(auto_reload(api)["waiting_reload_id"])

    settled = services.answer_simulated_bank(
        refill.db,
        gateway,
        refill.processor,
        agency_id=agency_id,
        attempt_id=reload_id,
        approved=approved,
    )
    again = services.finish_authentication(
        refill.db, refill.processor, agency_id=agency_id, attempt_id=reload_id
    )

    assert settled.status is again.status is status
    assert services.get_wallet(refill.db, refill.policy, agency_id=agency_id).balance == balance
    with pytest.raises(Conflict, match="not waiting for authentication"):
        services.answer_simulated_bank(
            refill.db,
            gateway,
            refill.processor,
            agency_id=agency_id,
            attempt_id=reload_id,
            approved=True,
        )
