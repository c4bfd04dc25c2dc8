"""The OpenAPI document is one a generated client can live with: openapi-python-client
generates a client from what `refill serve` serves, and the seed flow runs through it,
operations grouped by resource under short names, refusals parsed as ``Problem``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.server import Server, create_agency

GENERATOR = str(Path(sys.executable).parent / "openapi-python-client")
PACKAGE = "refill_generated_client"


@pytest.fixture
def generated(tmp_path: Path, start_server: Any, db_url: str) -> Iterator[tuple[Server, str]]:
    server = start_server(db_url)
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{server.base}/openapi.json", timeout=10).content)
    result = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
        ],
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (tmp_path / PACKAGE / "client.py").exists(), result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield server, create_agency(db_url)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_generated_client_runs_the_seed_flow_and_parses_refusals_as_problems(
    generated: tuple[Server, str],
) -> None:
    server, key = generated
    models = module("models")
    client = module("client").AuthenticatedClient(base_url=server.base, token=key)
    subteams = module("api.subteams.create_subteam")
    cards = module("api.payment_methods.save_payment_method")
    settings = module("api.wallet.update_auto_reload")
    credits = module("api.wallet.add_credits")
    usage = module("api.usage.record_usage")
    wallet = module("api.wallet.get_wallet")
    authorize = module("api.usage.authorize_call")

    with client as api:
        subteam = subteams.sync(client=api, body=models.SubteamCreate(name="Sales"))
        card = cards.sync(client=api, body=models.PaymentMethodCreate(token="pm_card_visa"))
        topup = credits.sync(
            client=api,
            body=models.CreditsCreate(amount="30.00", payment_method_id=card.id),
            idempotency_key="seed-1",
        )
        saved = settings.sync(
            client=api,
            body=models.AutoReloadUpdate(
                enabled=True, threshold="20.00", reload_amount="50.00", payment_method_id=card.id
            ),
        )
        used = usage.sync(
            client=api,
            body=models.UsageCreate(subteam_id=subteam.id, amount="12.50", reference="call-1"),
        )
        after = wallet.sync(client=api)
        allowed = authorize.sync(client=api, body=models.AuthorizeRequest(subteam_id=subteam.id))
        too_much = usage.sync_detailed(
            client=api,
            body=models.UsageCreate(subteam_id=subteam.id, amount="1000.00", reference="call-2"),
        )
        wrong = usage.sync_detailed(
            client=api,
            body=models.UsageCreate(subteam_id=subteam.id, amount="5\n", reference="call-3"),
        )

    assert (topup.status, saved.auto_reload.status) == ("succeeded", "active")
    assert used.balance_after == "17.50"  # below 20.00: the reload follows
    assert after.balance in ("17.50", "67.50")
    assert allowed.allowed is True
    assert too_much.status_code == 402
    assert isinstance(too_much.parsed, models.Problem)
    assert too_much.parsed.code == "insufficient_credits"
    assert wrong.status_code == 422
    assert isinstance(wrong.parsed, models.Problem)
    assert wrong.parsed.code == "invalid_amount"
