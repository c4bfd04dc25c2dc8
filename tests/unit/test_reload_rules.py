"""Fast tier: auto-reload settings validation and the sandbox gateway (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from refill.cards import PaymentMethod
from refill.errors import InvalidPaymentMethod, InvalidSettings
from refill.gateway.base import ChargeRequest, ChargeStatus
from refill.gateway.sandbox import TEST_CARDS, SandboxGateway
from refill.reload.policy import ReloadPolicy
from refill.reload.settings import AutoReloadSettings, validate_settings
from refill.reload.states import SettingsStatus

NOW = datetime(2026, 6, 15, tzinfo=UTC)
POLICY = ReloadPolicy()


def card(exp_month: int = 12, exp_year: int = 2030) -> PaymentMethod:
    return PaymentMethod(
        "pay_1", "agc_1", "sandbox", "pm_card_visa", "visa", "4242", exp_month, exp_year, NOW
    )


def settings(
    enabled: bool = True,
    threshold: int | None = 20_000_000,
    reload_amount: int | None = 50_000_000,
    pm: str | None = "pay_1",
) -> AutoReloadSettings:
    status = SettingsStatus.ACTIVE if enabled else SettingsStatus.OFF
    return AutoReloadSettings(enabled, threshold, reload_amount, pm, status)


@pytest.mark.parametrize(
    ("candidate", "payment_method", "field"),
    [
        (settings(threshold=-1), card(), "threshold"),
        (settings(reload_amount=0), card(), "reload_amount"),
        (settings(reload_amount=-5_000_000), card(), "reload_amount"),
        (settings(reload_amount=10_001_000), card(), "reload_amount"),
        (settings(reload_amount=4_990_000), card(), "reload_amount"),
        (settings(reload_amount=10_000_010_000), card(), "reload_amount"),
        (settings(threshold=None), card(), "threshold"),
        (settings(reload_amount=None), card(), "reload_amount"),
        (settings(pm=None), None, "payment_method_id"),
        (settings(), card(exp_month=5, exp_year=2026), "payment_method_id"),
        (settings(enabled=False, reload_amount=1_000_000), None, "reload_amount"),
    ],
    ids=[
        "negative-threshold",
        "zero-amount",
        "negative-amount",
        "fraction-of-a-cent",
        "below-minimum",
        "above-maximum",
        "enable-without-threshold",
        "enable-without-amount",
        "enable-without-card",
        "enable-with-expired-card",
        "disabled-still-checks-amount",
    ],
)
def test_invalid_settings_are_refused_naming_the_field(
    candidate: AutoReloadSettings, payment_method: PaymentMethod | None, field: str
) -> None:
    with pytest.raises(InvalidSettings) as raised:
        validate_settings(POLICY, "USD", candidate, payment_method, NOW)
    assert raised.value.extra["field"] == field


@pytest.mark.parametrize(
    ("candidate", "payment_method"),
    [
        (settings(), card()),
        (settings(threshold=0), card()),
        (settings(threshold=4_000_000, reload_amount=5_000_000), card()),
        (settings(reload_amount=10_000_000_000), card()),
        (settings(), card(exp_month=6, exp_year=2026)),
        (settings(enabled=False, threshold=None, reload_amount=None, pm=None), None),
    ],
    ids=[
        "typical",
        "zero-threshold",
        "minimum-amount",
        "maximum-amount",
        "card-expiring-this-month",
        "disabled-and-empty",
    ],
)
def test_valid_settings_are_accepted(
    candidate: AutoReloadSettings, payment_method: PaymentMethod | None
) -> None:
    validate_settings(POLICY, "USD", candidate, payment_method, NOW)


def test_yen_reload_amounts_must_be_whole_yen_and_the_message_says_yen() -> None:
    yen = 1_000_000
    with pytest.raises(InvalidSettings) as raised:
        validate_settings(
            POLICY,
            "JPY",
            settings(threshold=500 * yen, reload_amount=1_000 * yen + 500_000),
            card(),
            NOW,
        )
    assert "whole number of yen" in raised.value.message
    assert "cents" not in raised.value.message
    validate_settings(
        POLICY, "JPY", settings(threshold=500 * yen, reload_amount=1_000 * yen), card(), NOW
    )


USD = 1_000_000


def full(**values: object) -> AutoReloadSettings:
    base: dict[str, object] = {
        "enabled": True,
        "threshold": 20 * USD,
        "reload_amount": 50 * USD,
        "payment_method_id": "pay_1",
        "status": "active",
    }
    return AutoReloadSettings(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("currency", "candidate", "field"),
    [
        ("USD", full(threshold=10_000 * USD + 10_000, reload_amount=10_000 * USD), "threshold"),
        ("USD", full(threshold=9_223_372_036_854_775_807), "threshold"),
        ("USD", full(monthly_cap=1_000_000 * USD + 10_000), "monthly_cap"),
        ("USD", full(daily_limit=51), "daily_limit"),
        ("USD", full(threshold=50 * USD, reload_amount=50 * USD), "reload_amount"),
        ("USD", full(threshold=60 * USD, reload_amount=50 * USD), "reload_amount"),
        (
            "USD",
            full(mode="target", threshold=60 * USD, reload_amount=None, target_balance=60 * USD),
            "target_balance",
        ),
        ("JPY", full(threshold=500 * USD, reload_amount=400 * USD), "reload_amount"),
        ("JPY", full(threshold=500 * USD, reload_amount=1_000_001 * USD), "reload_amount"),
        ("JPY", full(threshold=1_000_001 * USD, reload_amount=1_000_000 * USD), "threshold"),
    ],
    ids=[
        "threshold-above-10000",
        "threshold-at-bigint-max",
        "monthly-cap-above-1000000",
        "daily-limit-above-50",
        "fixed-reload-equal-to-threshold-cascades",
        "fixed-reload-below-threshold-cascades",
        "target-not-above-threshold-cascades",
        "yen-reload-below-500",
        "yen-reload-above-1000000",
        "yen-threshold-above-1000000",
    ],
)
def test_settings_are_bounded_per_currency_and_reloads_cannot_cascade(
    currency: str, candidate: AutoReloadSettings, field: str
) -> None:
    with pytest.raises(InvalidSettings) as raised:
        validate_settings(POLICY, currency, candidate, card(), NOW)
    assert raised.value.extra["field"] == field


def test_the_cascade_rule_is_checked_only_when_its_fields_change() -> None:
    older = full(threshold=60 * USD, reload_amount=50 * USD, payment_method_id="pay_0")
    # Only the card changes: older settings that predate the rule can still swap a card.
    validate_settings(
        POLICY,
        "USD",
        full(threshold=60 * USD, reload_amount=50 * USD),
        card(),
        NOW,
        previous=older,
    )
    with pytest.raises(InvalidSettings):
        validate_settings(
            POLICY,
            "USD",
            full(threshold=61 * USD, reload_amount=50 * USD),
            card(),
            NOW,
            previous=older,
        )


EXPECTED_OUTCOMES = {
    "pm_card_visa": (ChargeStatus.SUCCEEDED, None),
    "pm_card_mastercard": (ChargeStatus.SUCCEEDED, None),
    "pm_card_chargeCustomerFail": (ChargeStatus.DECLINED, "card_declined"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": (ChargeStatus.DECLINED, "insufficient_funds"),
    "pm_card_chargeDeclinedProcessingError": (ChargeStatus.DECLINED, "processing_error"),
    "pm_card_chargeDeclinedExpiredCard": (ChargeStatus.DECLINED, "expired_card"),
    "pm_card_visa_chargeDeclinedLostCard": (ChargeStatus.DECLINED, "lost_card"),
    "pm_card_authenticationRequired": (ChargeStatus.REQUIRES_ACTION, "authentication_required"),
}


@pytest.mark.parametrize("token", sorted(EXPECTED_OUTCOMES), ids=sorted(EXPECTED_OUTCOMES))
def test_sandbox_tokens_save_with_a_future_expiry_and_fail_only_when_charged(token: str) -> None:
    gateway = SandboxGateway()
    details = gateway.describe_payment_method("agc_1", token)
    assert (details.exp_year, details.exp_month) > (NOW.year, NOW.month)
    assert len(details.last4) == 4
    request = ChargeRequest(token, 5000, "USD", "refill-reload-rld_x", "rld_x", "agc_1", "auto")
    result = gateway.charge(request)
    assert (result.status, result.failure_code) == EXPECTED_OUTCOMES[token]
    # Same idempotency key, same answer: a retried charge is the same charge.
    assert gateway.charge(request) == result


def test_every_sandbox_card_has_an_expected_outcome() -> None:
    assert set(TEST_CARDS) == set(EXPECTED_OUTCOMES)


def test_unknown_sandbox_token_is_refused() -> None:
    with pytest.raises(InvalidPaymentMethod):
        SandboxGateway().describe_payment_method("agc_1", "pm_card_nope")


def test_the_billing_page_names_every_sandbox_card() -> None:
    from refill.portal.views import SANDBOX_CARD_NAMES

    assert set(SANDBOX_CARD_NAMES) == set(TEST_CARDS)
