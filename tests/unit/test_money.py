"""Fast tier: exact money parsing and formatting (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.errors import InvalidAmount, UnsupportedCurrency
from refill.money import (
    CURRENCIES,
    MAX_MICROS,
    format_amount,
    is_whole_minor_units,
    minor_unit_micros,
    parse_amount,
    require_whole_minor_units,
    round_up_to_minor_units,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("25.00", 25_000_000),
        ("0", 0),
        ("0.000001", 1),
        ("1.5", 1_500_000),
        ("0.10", 100_000),
        ("9223372036854.775807", MAX_MICROS),
    ],
    ids=["cents", "zero", "one-micro", "short-fraction", "zero-point", "bigint-max"],
)
def test_decimal_strings_parse_to_exact_micro_units(text: str, micros: int) -> None:
    assert parse_amount(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "0.0000001",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "",
        " 1.00",
        "1.00 ",
        "1,00",
        "+1.00",
        ".5",
        "5.",
        "0x10",
        "1_000",
        "١٢",
        "9223372036854.775808",
        "99999999999999999999",
        "5\n",
        "5.00\n",
        "\n5",
        "007.10",
        "00",
        "00.5",
        "-0",
        "-0.00",
        "1" * 41,
        "-1.00",
    ],
    ids=[
        "seven-decimals",
        "exponent",
        "exponent-upper",
        "nan",
        "nan-lower",
        "infinity",
        "negative-infinity",
        "empty",
        "leading-space",
        "trailing-space",
        "comma",
        "plus-sign",
        "no-whole-part",
        "no-fraction-digits",
        "hex",
        "underscore",
        "arabic-digits",
        "bigint-max-plus-one",
        "huge",
        "trailing-newline",
        "cents-trailing-newline",
        "leading-newline",
        "leading-zeros",
        "double-zero",
        "double-zero-point",
        "negative-zero",
        "negative-zero-cents",
        "very-long",
        "negative",
    ],
)
def test_anything_but_a_plain_decimal_string_is_rejected(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text)


@pytest.mark.parametrize(
    "value", [1.5, 10, None, True, ["1"]], ids=["float", "int", "none", "bool", "list"]
)
def test_non_strings_are_rejected_so_no_float_touches_money(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(value)  # type: ignore[arg-type]


def test_negative_amounts_parse_only_when_allowed() -> None:
    assert parse_amount("-2.50", allow_negative=True) == -2_500_000


def test_a_negative_zero_is_refused_even_where_negatives_are_allowed() -> None:
    with pytest.raises(InvalidAmount):
        parse_amount("-0.00", allow_negative=True)


@pytest.mark.parametrize(
    ("currency", "unit"),
    [("USD", "cents"), ("JPY", "yen"), ("GBP", "pence"), ("KRW", "won")],
    ids=["usd", "jpy", "gbp", "krw"],
)
def test_a_charge_that_is_not_whole_minor_units_is_refused_in_the_currencys_words(
    currency: str, unit: str
) -> None:
    with pytest.raises(InvalidAmount) as raised:
        require_whole_minor_units(1_000_001, currency, "amount")
    assert f"whole number of {unit}" in raised.value.message


def test_every_currency_bounds_a_reload_below_its_threshold_and_cap() -> None:
    for currency in CURRENCIES.values():
        assert 0 < currency.min_reload < currency.max_reload <= currency.max_monthly_cap
        assert currency.max_threshold <= currency.max_monthly_cap
        assert currency.min_reload % minor_unit_micros(currency.code) == 0


@pytest.mark.parametrize(
    ("micros", "currency", "text"),
    [
        (25_000_000, "USD", "25.00"),
        (12_345, "USD", "0.012345"),
        (1_500_000, "USD", "1.50"),
        (0, "USD", "0.00"),
        (-2_500_000, "EUR", "-2.50"),
        (1_000_000, "JPY", "1"),
        (1_500_000, "JPY", "1.5"),
        (1_500_000, None, "1.500000"),
    ],
    ids=[
        "cents",
        "sub-cent",
        "pads-to-cents",
        "zero",
        "negative",
        "yen",
        "fraction-of-yen",
        "no-currency",
    ],
)
def test_amounts_format_with_the_currencys_minor_digits(
    micros: int, currency: str | None, text: str
) -> None:
    assert format_amount(micros, currency) == text


@given(st.integers(min_value=0, max_value=MAX_MICROS))
def test_format_then_parse_gives_back_the_same_micro_units(micros: int) -> None:
    assert parse_amount(format_amount(micros, "USD")) == micros
    assert parse_amount(format_amount(micros)) == micros


@given(
    st.decimals(
        min_value=0,
        max_value=Decimal("9223372036854"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_parsing_agrees_with_decimal_arithmetic(value: Decimal) -> None:
    assert parse_amount(f"{value:f}") == int(value * 1_000_000)


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["USD", "EUR", "JPY"]))
def test_rounding_up_to_minor_units_never_falls_short_nor_adds_a_whole_unit(
    micros: int, currency: str
) -> None:
    rounded = round_up_to_minor_units(micros, currency)
    assert is_whole_minor_units(rounded, currency)
    assert micros <= rounded < micros + minor_unit_micros(currency)


def test_card_charges_are_whole_minor_units() -> None:
    assert to_minor_units(25_000_000, "USD") == 2500
    assert to_minor_units(25_000_000, "JPY") == 25
    with pytest.raises(InvalidAmount):
        to_minor_units(25_000_001, "USD")


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnsupportedCurrency):
        minor_unit_micros("XYZ")
