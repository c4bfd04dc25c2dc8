"""Fast tier: amounts as people type them on the billing page, and as they read them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.errors import InvalidAmount
from refill.money import display_amount, format_amount, parse_typed_amount


@pytest.mark.parametrize(
    ("typed", "currency", "micros"),
    [
        pytest.param("$30", "USD", 30_000_000, id="dollar-sign"),
        pytest.param("1,000.50", "USD", 1_000_500_000, id="thousands"),
        pytest.param("$1,234,567.89", "USD", 1_234_567_890_000, id="sign-and-thousands"),
        pytest.param("30 USD", "USD", 30_000_000, id="code-after"),
        pytest.param("usd 30", "USD", 30_000_000, id="code-before-any-case"),
        pytest.param("  $ 5.5 ", "USD", 5_500_000, id="spaces"),
        pytest.param("30.", "USD", 30_000_000, id="trailing-point"),
        pytest.param("007", "USD", 7_000_000, id="leading-zeros"),
        pytest.param("€12,50", "EUR", None, id="comma-decimal-is-not-guessed"),
        pytest.param("¥1,500", "JPY", 1_500_000_000, id="yen"),
    ],
)
def test_the_page_reads_what_people_type_as_the_apis_strict_amount(
    typed: str, currency: str, micros: int | None
) -> None:
    if micros is None:
        with pytest.raises(InvalidAmount, match="an amount such as"):
            parse_typed_amount(typed, currency)
    else:
        assert parse_typed_amount(typed, currency) == micros


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param("-5", id="negative"),
        pytest.param("1,00", id="bad-grouping"),
        pytest.param("12,3456", id="bad-grouping-long"),
        pytest.param("$$5", id="two-signs"),
        pytest.param("5 EUR", id="another-currency"),
        pytest.param("1e3", id="exponent"),
        pytest.param("5\n0", id="newline-inside"),
    ],
)
def test_what_cannot_be_read_as_an_amount_is_refused_quoting_what_was_typed(typed: str) -> None:
    with pytest.raises(InvalidAmount) as refused:
        parse_typed_amount(typed, "USD", field="threshold")
    assert refused.value.extra["field"] == "threshold"


@given(st.integers(min_value=0, max_value=10**15))
def test_an_amount_shown_on_the_page_reads_back_as_the_same_amount(micros: int) -> None:
    assert parse_typed_amount(display_amount(micros, "USD"), "USD") == micros
    assert parse_typed_amount(format_amount(micros, "USD"), "USD") == micros


@pytest.mark.parametrize(
    ("micros", "currency", "shown"),
    [
        pytest.param(40_000_000, "USD", "$40.00", id="dollars"),
        pytest.param(12_345, "USD", "$0.012345", id="sub-cent-usage-kept"),
        pytest.param(-5_000_000, "USD", "-$5.00", id="negative"),
        pytest.param(1_500_000_000, "JPY", "¥1,500", id="yen-no-decimals"),
        pytest.param(1_500_000_000, "EUR", "€1,500.00", id="euro"),
    ],
)
def test_amounts_are_shown_in_the_owners_money(micros: int, currency: str, shown: str) -> None:
    assert display_amount(micros, currency) == shown
