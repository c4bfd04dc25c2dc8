"""The billing page driven through a test client: agencies with an owner who can sign in,
and forms posted with their CSRF tokens."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from fastapi.testclient import TestClient
from httpx import Response

from refill import services
from refill.bootstrap import Refill
from refill.roles import MemberRole
from refill.services import members
from tests.support.cli import REFILL

PASSWORD = "correct horse battery"


@dataclass
class Agency:
    id: str
    api_key: str
    owner_email: str


def make_agency(refill: Refill, name: str = "Acme Voice") -> Agency:
    agency, key = services.create_agency(refill.db, name=name)
    email = f"owner@{name.lower().replace(' ', '-')}.test"
    members.add_member(
        refill.db,
        agency_id=agency.id,
        email=email,
        role=MemberRole.OWNER,
        password=PASSWORD,
        actor="test",
    )
    return Agency(agency.id, key.secret, email)


def hidden_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> Response:
    form = client.get("/portal/login")
    response: Response = client.post(
        "/portal/login",
        data={"email": email, "password": password, "csrf_token": hidden_csrf(form.text)},
        follow_redirects=False,
    )
    return response


def run_cli(
    args: list[str], database_url: str, *, stdin: str, extra: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REFILL, *args, *extra],
        env={**os.environ, "REFILL_DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def page_csrf(client: TestClient) -> str:
    page = client.get("/portal/team/billing")
    assert page.status_code == 200, page.text[:300]
    return hidden_csrf(page.text)


def post(client: TestClient, path: str, data: dict[str, str]) -> Response:
    response: Response = client.post(
        path, data={**data, "csrf_token": page_csrf(client)}, follow_redirects=False
    )
    return response


def settings_of(refill: Refill, agency: Agency) -> services.WalletView:
    return services.get_wallet(refill.db, refill.policy, agency_id=agency.id)
