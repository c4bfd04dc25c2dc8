"""Auto-reload's ordered list of cards (``auto_reload_cards``): the primary first, then the
backups; a hard-declined card is skipped until it is updated or named again."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update

from refill.db.database import Tx
from refill.db.schema import auto_reload_cards
from refill.errors import InvalidSettings
from refill.ids import wallet_id_for

# How many cards an owner may list for auto-reload (the primary and its backups).
MAX_CARDS = 5


@dataclass(frozen=True, slots=True)
class ReloadCard:
    """One card of auto-reload's ordered list; a skipped card was hard-declined and is not
    charged again until it is updated at the gateway or the owner names it again."""

    payment_method_id: str
    skipped_at: datetime | None = None
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skipped_at is not None


_CARDS = (
    select(
        auto_reload_cards.c.payment_method_id,
        auto_reload_cards.c.skipped_at,
        auto_reload_cards.c.skip_reason,
    )
    .where(auto_reload_cards.c.wallet_id == bindparam("wallet_id"))
    .order_by(auto_reload_cards.c.position)
)


def read_cards(tx: Tx, wallet_id: str) -> tuple[ReloadCard, ...]:
    return tuple(ReloadCard(*card) for card in tx.conn.execute(_CARDS, {"wallet_id": wallet_id}))


def check_card_list(ids: tuple[str, ...]) -> None:
    if len(ids) > MAX_CARDS:
        raise InvalidSettings(
            f"auto-reload can charge at most {MAX_CARDS} cards (a primary and "
            f"{MAX_CARDS - 1} backups)",
            field="payment_method_ids",
        )
    if len(set(ids)) != len(ids):
        raise InvalidSettings("a card is listed twice", field="payment_method_ids")


def write_cards(tx: Tx, wallet_id: str, cards: tuple[ReloadCard, ...]) -> None:
    """The list as given, in order (the caller holds the wallet's lock)."""
    tx.conn.execute(delete(auto_reload_cards).where(auto_reload_cards.c.wallet_id == wallet_id))
    if cards:
        tx.conn.execute(
            insert(auto_reload_cards),
            [
                {**asdict(card), "wallet_id": wallet_id, "position": position}
                for position, card in enumerate(cards)
            ],
        )


def skip_card(tx: Tx, agency_id: str, payment_method_id: str, reason: str) -> None:
    """A hard decline: later reloads skip this card until it is updated or named again."""
    tx.conn.execute(
        update(auto_reload_cards)
        .where(
            auto_reload_cards.c.wallet_id == wallet_id_for(agency_id),
            auto_reload_cards.c.payment_method_id == payment_method_id,
        )
        .values(skipped_at=tx.now, skip_reason=reason[:64])
    )


def unskip_card(tx: Tx, payment_method_id: str) -> None:
    """The card was updated at the gateway (renewed, say): it may be charged again."""
    tx.conn.execute(
        update(auto_reload_cards)
        .where(auto_reload_cards.c.payment_method_id == payment_method_id)
        .values(skipped_at=None, skip_reason=None)
    )
