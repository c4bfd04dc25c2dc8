"""The rules of the card list, pure: which card a reload charges, which comes next after a
decline, and what an owner's change does to the list, its skips and a suspension."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.errors import InvalidSettings
from refill.reload.card_list import ReloadCard
from refill.reload.chain import next_card
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import (
    NO_SETTINGS,
    UNSET,
    AutoReloadSettings,
    SettingsChange,
    change_from_text,
    merge_change,
    validate_settings,
)
from refill.reload.states import SettingsStatus

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def listed(*cards: str | tuple[str, str]) -> AutoReloadSettings:
    """Active settings with these cards in order; ``(id, reason)`` is a skipped card."""
    made = tuple(
        ReloadCard(c[0], NOW, c[1]) if isinstance(c, tuple) else ReloadCard(c) for c in cards
    )
    return replace(
        NO_SETTINGS,
        enabled=True,
        status=SettingsStatus.ACTIVE,
        threshold=20_000_000,
        reload_amount=50_000_000,
        payment_method_id=made[0].payment_method_id if made else None,
        cards=made,
    )


@pytest.mark.parametrize(
    ("settings", "declined", "expected"),
    [
        pytest.param(listed("a", "b", "c"), "a", "b", id="primary-hands-to-first-backup"),
        pytest.param(listed("a", "b", "c"), "b", "c", id="backup-to-the-next"),
        pytest.param(listed("a", "b", "c"), "c", None, id="last-card-ends-the-round"),
        pytest.param(listed("a", ("b", "lost_card"), "c"), "a", "c", id="skipped-is-passed-over"),
        pytest.param(listed("a"), "a", None, id="one-card-no-backup"),
        pytest.param(listed("x", "y"), "gone", "x", id="unlisted-card-hands-to-new-list"),
        pytest.param(listed(("x", "lost_card")), "gone", None, id="unlisted-and-none-left"),
    ],
)
def test_the_next_card_after_a_decline(
    settings: AutoReloadSettings, declined: str, expected: str | None
) -> None:
    assert next_card(settings, declined) == expected


def test_settings_with_a_primary_alone_are_a_list_of_one() -> None:
    legacy = replace(NO_SETTINGS, payment_method_id="a")
    assert legacy.payment_method_ids == ("a",)
    assert legacy.chargeable == ("a",)


@given(
    st.lists(st.sampled_from("abcde"), unique=True, min_size=1),
    st.sets(st.sampled_from("abcde")),
)
def test_a_round_charges_every_chargeable_card_once_in_order(
    order: list[str], skipped: set[str]
) -> None:
    settings = listed(*[(c, "lost_card") if c in skipped else c for c in order])
    tried: list[str] = []
    card = settings.chargeable[0] if settings.chargeable else None
    while card is not None:
        tried.append(card)
        card = next_card(settings, card)
    assert tried == [c for c in order if c not in skipped]


def test_naming_the_cards_again_clears_their_skips_and_resumes_a_suspension() -> None:
    current = replace(
        listed(("a", "expired_card"), ("b", "lost_card")),
        status=SettingsStatus.SUSPENDED,
        suspended_reason="every card was declined",
    )
    merged = merge_change(current, SettingsChange(payment_method_ids=("a", "b")))
    assert merged.chargeable == ("a", "b")
    assert merged.status is SettingsStatus.ACTIVE


def test_an_edit_that_names_no_card_keeps_the_list_its_skips_and_the_suspension() -> None:
    current = replace(listed("a", ("b", "lost_card")), status=SettingsStatus.SUSPENDED)
    merged = merge_change(current, SettingsChange(threshold=10_000_000))
    assert merged.card_list == current.card_list
    assert merged.status is SettingsStatus.SUSPENDED


def test_re_enabling_clears_every_skip() -> None:
    current = replace(listed(("a", "lost_card")), status=SettingsStatus.SUSPENDED)
    merged = merge_change(current, SettingsChange(enabled=True))
    assert merged.chargeable == ("a",)
    assert merged.status is SettingsStatus.ACTIVE


def test_enabled_true_while_active_keeps_the_skips() -> None:
    current = listed(("a", "lost_card"), "b")
    merged = merge_change(current, SettingsChange(enabled=True))
    assert merged.card_list == current.card_list
    assert merged.chargeable == ("b",)


def test_payment_method_id_replaces_the_whole_list_with_one_card() -> None:
    merged = merge_change(listed("a", "b"), SettingsChange(payment_method_id="b"))
    assert merged.payment_method_ids == ("b",)
    assert merged.payment_method_id == "b"
    cleared = merge_change(listed("a", "b"), SettingsChange(payment_method_id=None))
    assert (cleared.payment_method_ids, cleared.payment_method_id) == ((), None)


def test_the_same_list_sent_again_is_no_change() -> None:
    current = listed("a", "b")
    assert merge_change(current, SettingsChange(payment_method_ids=("a", "b"))) == current


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        pytest.param(("a", "a"), "listed twice", id="twice"),
        pytest.param(tuple("abcdef"), "at most 5 cards", id="six"),
    ],
)
def test_a_wrong_list_is_refused_naming_the_field(ids: tuple[str, ...], message: str) -> None:
    settings = replace(listed(*ids[:1]), cards=tuple(ReloadCard(i) for i in ids))
    with pytest.raises(InvalidSettings, match=message) as refused:
        validate_settings(ReloadPolicy(), "USD", settings, None, NOW)
    assert refused.value.extra["field"] == "payment_method_ids"


def test_both_ways_of_naming_cards_at_once_are_refused() -> None:
    with pytest.raises(InvalidSettings, match="not both"):
        change_from_text({"payment_method_ids": ["a"], "payment_method_id": "a"})
    assert change_from_text({"payment_method_ids": None}).payment_method_ids == ()
    assert change_from_text({}).payment_method_ids is UNSET
