"""Backup cards on the billing page, on SQLite and PostgreSQL: the Auto Reload form keeps
the backups when it saves, the list of cards in order with its buttons (move up, move down,
add as backup, take out), and what a member may not do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from refill import services
from refill.bootstrap import Refill
from refill.clock import FrozenClock
from refill.db.database import Tx
from refill.reload import card_list, settings_store
from refill.reload import settings as reload_settings
from refill.reload.settings import SettingsChange
from refill.reload.states import SettingsStatus
from refill.roles import MemberRole
from refill.services import members
from tests.support.portal import PASSWORD, Agency, make_agency, page_csrf, post, sign_in

USD = 1_000_000
ORDER = "/portal/team/billing/auto-reload/cards"
FORM = "/portal/team/billing/auto-reload"
TOKENS = {
    "visa": "pm_card_visa",  # Visa ending 4242
    "master": "pm_card_mastercard",  # Mastercard ending 4444
    "broke": "pm_card_visa_chargeDeclinedInsufficientFunds",  # Visa ending 9995
}


@dataclass
class Owner:
    svc: Refill
    agency: Agency
    cards: dict[str, str]  # "visa" -> its payment method id

    def listed(self) -> list[str]:
        """Auto Reload's list, by the cards' short names."""
        ids = {pm: name for name, pm in self.cards.items()}
        return [ids[pm] for pm in self.settings().payment_method_ids]

    def settings(self) -> reload_settings.AutoReloadSettings:
        return services.get_wallet(
            self.svc.db, self.svc.policy, agency_id=self.agency.id
        ).auto_reload

    def arm(self, *names: str, enabled: bool = True) -> None:
        services.update_auto_reload(
            self.svc.db,
            self.svc.gateway,
            self.svc.policy,
            agency_id=self.agency.id,
            currency="USD",
            change=SettingsChange(
                enabled=enabled,
                threshold=20 * USD,
                reload_amount=50 * USD,
                payment_method_ids=tuple(self.cards[n] for n in names),
            ),
            actor="test",
        )

    def skip(self, name: str, code: str = "expired_card") -> None:
        def work(tx: Tx) -> None:
            card_list.skip_card(tx, self.agency.id, self.cards[name], code)

        self.svc.db.write(work)


@pytest.fixture
def owner(svc: Refill, api: TestClient) -> Owner:
    agency = make_agency(svc)
    # Credits well above the threshold: saving settings starts no reload.
    services.grant_credits(svc.db, agency_id=agency.id, amount=500 * USD, reference="g")
    cards = {
        name: services.save_payment_method(
            svc.db, svc.gateway, agency_id=agency.id, token=token, actor="test"
        )[0].id
        for name, token in TOKENS.items()
    }
    assert sign_in(api, agency.owner_email).status_code == 303
    return Owner(svc, agency, cards)


def form_fields(owner: Owner, card: str, **extra: str) -> dict[str, str]:
    """The Auto Reload form as the page sends it, with ``card`` chosen in its select."""
    return {
        "enabled": "on",
        "mode": "fixed",
        "threshold": "20.00",
        "reload_amount": "50.00",
        "target_balance": "",
        "payment_method_id": owner.cards[card] if card else "",
        "daily_limit": "10",
        "monthly_cap": "",
        **extra,
    }


def test_saving_the_form_with_the_same_primary_keeps_the_backups_and_their_skips(
    api: TestClient, owner: Owner
) -> None:
    owner.arm("visa", "master", "broke")
    owner.skip("broke")

    saved = post(api, FORM, form_fields(owner, "visa", threshold="25.00"))

    assert saved.status_code == 303, saved.text[:500]
    after = owner.settings()
    assert owner.listed() == ["visa", "master", "broke"]
    assert after.threshold == 25 * USD
    assert [c.skipped for c in after.card_list] == [False, False, True]


def test_saving_the_form_while_suspended_still_turns_it_on_again(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    owner.arm("visa", "master")
    owner.skip("visa")

    def suspend(tx: Tx) -> None:
        settings_store.suspend(tx, owner.agency.id, "USD", "expired_card")

    svc.db.write(suspend)

    assert post(api, FORM, form_fields(owner, "visa")).status_code == 303

    after = owner.settings()
    assert after.status == SettingsStatus.ACTIVE  # "Auto Reload on", ticked: try again
    assert owner.listed() == ["visa", "master"]
    assert not any(c.skipped for c in after.card_list)


@pytest.mark.parametrize(
    ("chosen", "listed"),
    [
        pytest.param("master", ["master", "visa", "broke"], id="a-backup-becomes-primary"),
        pytest.param("broke", ["broke", "visa"], id="a-card-not-listed-becomes-primary"),
    ],
)
def test_choosing_another_primary_keeps_the_others_as_backups_in_order(
    api: TestClient, owner: Owner, chosen: str, listed: list[str]
) -> None:
    owner.arm(*(["visa", "master", "broke"] if chosen == "master" else ["visa"]))

    assert post(api, FORM, form_fields(owner, chosen)).status_code == 303

    assert owner.listed() == listed


def test_no_card_chosen_empties_the_list_with_auto_reload_off(
    api: TestClient, owner: Owner
) -> None:
    owner.arm("visa", "master", enabled=False)

    assert post(api, FORM, form_fields(owner, "", enabled="")).status_code == 303

    assert owner.listed() == []


def test_use_these_settings_keeps_the_backups(
    svc: Refill, api: TestClient, owner: Owner, clock: FrozenClock
) -> None:
    owner.arm("visa", "master")
    sales = services.create_subteam(svc.db, agency_id=owner.agency.id, name="Sales").id
    for i in range(48):  # two days of usage: the page recommends settings
        clock.advance(timedelta(hours=1))
        services.record_usage(
            svc.db, agency_id=owner.agency.id, subteam_id=sales, amount=2 * USD, reference=f"u{i}"
        )
    assert sign_in(api, owner.agency.owner_email).status_code == 303  # two days idle
    page = api.get("/portal/team/billing").text
    form = page.split('data-testid="use-recommendation"')[1].split("</form>")[0]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
    assert fields["payment_method_id"] == owner.cards["visa"]

    used = api.post(FORM, data=fields, follow_redirects=False)

    assert used.status_code == 303, used.text[:500]
    assert owner.listed() == ["visa", "master"]


@pytest.mark.parametrize(
    ("action", "card", "listed"),
    [
        pytest.param("up", "master", ["master", "visa", "broke"], id="up"),
        pytest.param("down", "visa", ["master", "visa", "broke"], id="down"),
        pytest.param("up", "visa", ["visa", "master", "broke"], id="up-when-first"),
        pytest.param("down", "broke", ["visa", "master", "broke"], id="down-when-last"),
        pytest.param("drop", "master", ["visa", "broke"], id="drop-a-backup"),
        pytest.param("drop", "visa", ["master", "broke"], id="drop-the-primary"),
    ],
)
def test_the_buttons_change_the_order(
    api: TestClient, owner: Owner, action: str, card: str, listed: list[str]
) -> None:
    owner.arm("visa", "master", "broke")

    moved = post(api, ORDER, {"action": action, "payment_method_id": owner.cards[card]})

    assert moved.status_code == 303, moved.text[:500]
    assert moved.headers["location"].endswith("#reload-cards")
    assert owner.listed() == listed
    assert api.get(moved.headers["location"]).text.count('data-testid="reload-card"') == len(listed)


def test_add_as_backup_puts_the_card_last(api: TestClient, owner: Owner) -> None:
    owner.arm("visa")
    page = api.get("/portal/team/billing").text
    assert 'aria-label="Add as backup: Mastercard ending 4444"' in page
    assert 'aria-label="Add as backup: Visa ending 4242"' not in page  # listed already

    for card in ("broke", "master"):
        added = post(api, ORDER, {"action": "add", "payment_method_id": owner.cards[card]})
        assert added.status_code == 303, added.text[:500]

    assert owner.listed() == ["visa", "broke", "master"]


def test_taking_out_the_only_card_while_on_is_refused_in_words(
    api: TestClient, owner: Owner
) -> None:
    owner.arm("visa")

    refused = post(api, ORDER, {"action": "drop", "payment_method_id": owner.cards["visa"]})

    assert refused.status_code == 422
    assert "The list was not changed: Auto Reload is on and needs a card to charge" in refused.text
    assert owner.listed() == ["visa"]


def test_a_card_of_another_agency_is_no_such_card(api: TestClient, owner: Owner) -> None:
    owner.arm("visa")

    refused = post(api, ORDER, {"action": "add", "payment_method_id": "pm_not_ours"})

    assert refused.status_code == 404
    assert owner.listed() == ["visa"]


def test_the_page_shows_the_cards_in_order_with_their_places_and_skips(
    api: TestClient, owner: Owner
) -> None:
    owner.arm("visa", "master")
    owner.skip("master")

    page = api.get("/portal/team/billing").text

    rows = page.split('data-testid="reload-card"')[1:]
    assert re.findall(r'class="place[^"]*">([^<]+)<', page) == ["Primary", "Backup 1"]
    assert "Visa ending 4242" in rows[0]
    assert "Mastercard ending 4444" in rows[1]
    assert "Skipped after a decline (the card has expired)" in rows[1]
    assert 'aria-label="Move up: Mastercard ending 4444"' in rows[1]
    assert 'aria-label="Move down: Visa ending 4242"' in rows[0]
    assert "Move up" not in rows[0].split("</li>")[0]
    # Listed cards cannot be removed while Auto Reload is on: the hint names their place.
    assert "Backup 1 of Auto Reload: take it out of the list to remove it." in page
    assert 'aria-label="Remove Mastercard ending 4444"' not in page
    assert 'aria-label="Remove Visa ending 9995"' in page


def test_a_member_sees_the_list_without_buttons_and_is_refused(
    svc: Refill, api: TestClient, owner: Owner
) -> None:
    owner.arm("visa", "master")
    members.add_member(
        svc.db,
        agency_id=owner.agency.id,
        email="member@acme.test",
        role=MemberRole.MEMBER,
        password=PASSWORD,
        actor="test",
    )
    api.cookies.clear()
    assert sign_in(api, "member@acme.test").status_code == 303

    page = api.get("/portal/team/billing").text
    assert page.count('data-testid="reload-card"') == 2
    assert re.findall(r'class="place[^"]*">([^<]+)<', page) == ["Primary", "Backup 1"]
    assert ORDER not in page
    refused = api.post(
        ORDER,
        data={
            "action": "up",
            "payment_method_id": owner.cards["master"],
            "csrf_token": page_csrf(api),
        },
        follow_redirects=False,
    )

    assert refused.status_code == 403
    assert owner.listed() == ["visa", "master"]
