"""End to end over HTTP against a real `refill serve` process (loopback only, bounded).

Each test starts `refill serve` as a subprocess on a free 127.0.0.1 port, waits for
GET /healthz (at most 20 s), talks to it with httpx, and always stops it (SIGTERM, then
SIGKILL) in the fixture's teardown. Agencies are created with the real CLI.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import (
    DEMO_RELOAD_WITHIN,
    REFILL,
    RELOAD_WITHIN,
    Server,
    auto_reloads,
    call,
    client,
    create_agency,
    wait_for,
)


def test_serve_credits_exactly_one_auto_reload_after_usage_drops_below_the_threshold(
    start_server: Callable[..., Server], db_url: str
) -> None:
    server = start_server(db_url)
    with client(server, create_agency(db_url)) as api:
        assert call(api, "GET", "/readyz", 200) == {"status": "ready"}
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        card = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})
        assert (card["brand"], card["last4"]) == ("visa", "4242")
        topup = call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "30.00", "payment_method_id": card["id"]},
        )
        assert (topup["trigger"], topup["status"], topup["amount"]) == (
            "manual",
            "succeeded",
            "30.00",
        )
        wallet = call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": card["id"],
            },
        )
        assert wallet["balance"] == "30.00"
        assert wallet["auto_reload"]["status"] == "active"
        assert auto_reloads(api) == []  # 30.00 is not below 20.00: nothing to do yet

        # Sub-cent amounts: the third call leaves 19.999999, just below the threshold.
        amounts = ["4.25", "3.333333", "2.416668", "1.00", "1.00", "1.00"]
        used = Decimal(0)
        for i, amount in enumerate(amounts):
            transfer = call(
                api,
                "POST",
                "/v1/usage",
                201,
                json={"subteam_id": subteam, "amount": amount, "reference": f"call-{i}"},
            )
            used += Decimal(amount)
            assert transfer["direction"] == "debit"
            if Decimal(transfer["balance_after"]) < Decimal("20.00"):
                break
        assert used == Decimal("10.000001")

        def succeeded() -> list[dict[str, Any]]:
            return [r for r in auto_reloads(api) if r["status"] == "succeeded"]

        (reloaded,) = wait_for(
            succeeded,
            RELOAD_WITHIN,
            lambda: (
                f"no auto-reload succeeded within {RELOAD_WITHIN}s: "
                f"{auto_reloads(api)}\n{server.output}"
            ),
        )
        assert (reloaded["amount"], reloaded["currency"]) == ("50.00", "USD")
        assert reloaded["payment_method_id"] == card["id"]
        assert reloaded["failure_code"] is None

        expected = Decimal("30.00") - used + Decimal("50.00")
        wallet = call(api, "GET", "/v1/wallet", 200)
        assert Decimal(wallet["balance"]) == expected == Decimal("69.999999")
        assert wallet["auto_reload"]["status"] == "active"
        assert len(auto_reloads(api)) == 1  # 69.999999 is above the threshold: no second one

        credits = [
            t
            for t in call(api, "GET", "/v1/transactions", 200)["data"]
            if t["kind"] == "auto_reload"
        ]
        assert [(t["amount"], Decimal(t["balance_after"])) for t in credits] == [
            ("50.00", expected)
        ]
        answer = call(api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
        assert answer["allowed"] is True
        assert Decimal(answer["available"]) == expected


@pytest.mark.parametrize(
    ("token", "decline_code", "env", "failed_attempts"),
    [
        # card_declined is a soft decline: retried after each of REFILL_RETRY_DELAYS_SECONDS
        # (shortened here to one retry after 0.3 s), then auto-reload is suspended.
        (
            "pm_card_chargeCustomerFail",
            "card_declined",
            {"REFILL_RETRY_DELAYS_SECONDS": "[0.3]"},
            2,
        ),
        # lost_card is a hard decline: no retry, suspended at once (default settings).
        ("pm_card_visa_chargeDeclinedLostCard", "lost_card", {}, 1),
    ],
    ids=["soft-decline-retried-then-suspended", "hard-decline-suspended-at-once"],
)
def test_serve_declined_auto_reload_fails_leaves_the_balance_and_suspends_auto_reload(
    start_server: Callable[..., Server],
    db_url: str,
    token: str,
    decline_code: str,
    env: dict[str, str],
    failed_attempts: int,
) -> None:
    server = start_server(db_url, env=env)
    with client(server, create_agency(db_url)) as api:
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        good = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})["id"]
        bad = call(api, "POST", "/v1/payment-methods", 201, json={"token": token})["id"]
        call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "21.00", "payment_method_id": good},
        )
        call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": bad,
            },
        )
        usage = call(
            api,
            "POST",
            "/v1/usage",
            201,
            json={"subteam_id": subteam, "amount": "2.00", "reference": "call-1"},
        )
        assert usage["balance_after"] == "19.00"

        def suspended() -> dict[str, Any] | None:
            wallet: dict[str, Any] = call(api, "GET", "/v1/wallet", 200)
            return wallet if wallet["auto_reload"]["status"] == "suspended" else None

        wallet = wait_for(
            suspended,
            RELOAD_WITHIN,
            lambda: (
                f"auto-reload not suspended within {RELOAD_WITHIN}s: "
                f"{auto_reloads(api)}\n{server.output}"
            ),
        )
        assert wallet["balance"] == "19.00"
        assert decline_code in wallet["auto_reload"]["suspended_reason"]

        attempts = sorted(auto_reloads(api), key=lambda r: r["retry_number"])
        assert [(r["status"], r["failure_code"], r["amount"]) for r in attempts] == [
            ("failed", decline_code, "50.00")
        ] * failed_attempts
        assert all(r["payment_method_id"] == bad for r in attempts)
        # Each retry is a new attempt linked to the one it retries.
        assert [r["retry_of"] for r in attempts] == [None] + [r["id"] for r in attempts[:-1]]

        assert [t["kind"] for t in call(api, "GET", "/v1/transactions", 200)["data"]].count(
            "auto_reload"
        ) == 0
        answer = call(api, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
        assert answer["allowed"] is True
        assert answer["available"] == "19.00"


def test_serve_keeps_auto_reload_active_and_schedules_a_retry_after_a_soft_decline_by_default(
    start_server: Callable[..., Server], db_url: str
) -> None:
    server = start_server(db_url)
    with client(server, create_agency(db_url)) as api:
        subteam = call(api, "POST", "/v1/subteams", 201, json={"name": "Sales"})["id"]
        good = call(api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_visa"})["id"]
        bad = call(
            api, "POST", "/v1/payment-methods", 201, json={"token": "pm_card_chargeCustomerFail"}
        )["id"]
        call(
            api,
            "POST",
            "/v1/wallet/credits",
            201,
            json={"amount": "21.00", "payment_method_id": good},
        )
        call(
            api,
            "PUT",
            "/v1/wallet/auto-reload",
            200,
            json={
                "enabled": True,
                "threshold": "20.00",
                "reload_amount": "50.00",
                "payment_method_id": bad,
            },
        )
        call(
            api,
            "POST",
            "/v1/usage",
            201,
            json={"subteam_id": subteam, "amount": "2.00", "reference": "call-1"},
        )

        def failed_and_retry() -> list[dict[str, Any]] | None:
            attempts = sorted(auto_reloads(api), key=lambda r: r["retry_number"])
            return attempts if [r["status"] for r in attempts] == ["failed", "pending"] else None

        first, retry = wait_for(
            failed_and_retry,
            RELOAD_WITHIN,
            lambda: f"no failed reload with a pending retry: {auto_reloads(api)}\n{server.output}",
        )
        assert first["failure_code"] == "card_declined"
        assert (retry["retry_of"], retry["retry_number"]) == (first["id"], 1)
        assert retry["not_before"] is not None  # first retry waits an hour by default
        wallet = call(api, "GET", "/v1/wallet", 200)
        assert wallet["balance"] == "19.00"
        assert wallet["auto_reload"]["status"] == "active"


def test_serve_refuses_calls_with_no_credits_when_the_wallet_is_empty(
    start_server: Callable[..., Server], db_url: str
) -> None:
    server = start_server(db_url)
    with client(server, create_agency(db_url)) as owner:
        subteam = call(owner, "POST", "/v1/subteams", 201, json={"name": "Support"})["id"]
        subteam_key = call(owner, "POST", f"/v1/subteams/{subteam}/keys", 201)["api_key"]
        expected = {
            "allowed": False,
            "reason": "no_credits",
            "available": "0.00",
            "currency": "USD",
        }
        assert (
            call(owner, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
            == expected
        )
        # The subteam's own key (what a dialer would hold) gets the same answer.
        with client(server, subteam_key) as dialer:
            assert (
                call(dialer, "POST", "/v1/calls/authorize", 200, json={"subteam_id": subteam})
                == expected
            )


def test_serve_demo_logs_a_succeeded_auto_reload_within_a_minute_and_prints_a_working_owner_key(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgraded = subprocess.run(
        [REFILL, "db", "upgrade"],
        env={**os.environ, "REFILL_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(url, "--demo", cwd=tmp_path)

    def reload_line() -> str | None:
        return next(
            (line for line in list(server.stderr) if "reload" in line and "succeeded" in line),
            None,
        )

    line = wait_for(
        reload_line,
        DEMO_RELOAD_WITHIN,
        lambda: f"no succeeded reload logged within {DEMO_RELOAD_WITHIN}s:\n{server.output}",
    )
    assert "auto reload" in line, line
    assert "+100.00 USD" in line, line  # the demo reloads 100.00 below 20.00

    printed = "".join(server.stdout) + "".join(server.stderr)
    match = re.search(r"owner key:\s*(\S+)", printed)
    assert match, f"no owner key printed:\n{server.output}"
    with client(server, match.group(1)) as api:
        wallet = call(api, "GET", "/v1/wallet", 200)
        assert wallet["currency"] == "USD"
        assert wallet["auto_reload"]["status"] == "active"
        assert (wallet["auto_reload"]["threshold"], wallet["auto_reload"]["reload_amount"]) == (
            "20.00",
            "100.00",
        )
        assert wallet["auto_reload"]["daily_limit"] == 50  # an hour left alone meets no rail
        assert any(
            r["status"] == "succeeded" and r["amount"] == "100.00" for r in auto_reloads(api)
        )

    # The billing page opens with the e-mail and password printed next to the URL.
    login = re.search(r"sign in:\s*(\S+@\S+) / (\S+)", printed)
    assert login, f"no demo sign-in printed:\n{server.output}"
    with httpx.Client(base_url=server.base, timeout=10) as browser:
        form = browser.get("/portal/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        signed_in = browser.post(
            "/portal/login",
            data={"email": login[1], "password": login[2], "csrf_token": token[1]},
        )
        assert signed_in.status_code == 303, signed_in.text
        page = browser.get("/portal/team/billing")
        assert page.status_code == 200
        assert "Demo Agency" in page.text

    # SIGTERM is a graceful shutdown (uvicorn re-raises the signal once it is done).
    server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM), server.output
    assert "Application shutdown complete" in "".join(server.stderr)
