"""An agency set up for the reload tests: a subteam, a sandbox card, 25.00 of credits and
auto-reload on (below 20.00, reload 50.00)."""

from __future__ import annotations

from dataclasses import dataclass

from refill import services
from refill.bootstrap import Refill
from refill.reload.settings import SettingsChange


@dataclass(frozen=True)
class Armed:
    agency_id: str
    subteam_id: str
    card_id: str


def armed_agency(refill: Refill, name: str = "Armed") -> Armed:
    db = refill.db
    agency, _ = services.create_agency(db, name=name)
    subteam = services.create_subteam(db, agency_id=agency.id, name="s")
    card, _ = services.save_payment_method(
        db, refill.gateway, agency_id=agency.id, token="pm_card_visa", actor="test"
    )
    services.grant_credits(db, agency_id=agency.id, amount=25_000_000, reference="start")
    services.update_auto_reload(
        db,
        refill.gateway,
        refill.policy,
        agency_id=agency.id,
        currency="USD",
        actor="test",
        change=SettingsChange(
            enabled=True, threshold=20_000_000, reload_amount=50_000_000, payment_method_id=card.id
        ),
    )
    return Armed(agency.id, subteam.id, card.id)
