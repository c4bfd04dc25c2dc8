"""Exact money: the only module that knows how amounts are represented.

Inside Refill every amount is an ``int`` of **micro-units** (10^-6 of the currency unit),
because usage is metered per second and a second of a call can cost a fraction of a cent.
Card charges are made in the currency's own minor unit (cents for USD, yen for JPY), so a
charge amount is always a whole number of those.

Decimal strings (``"25.00"``) are parsed and formatted here and nowhere else. Floats never
touch money: the parser takes strings only, and refuses exponents, NaN, infinities, more
than six decimal places and values a signed 64-bit column cannot hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from refill.errors import InvalidAmount, UnsupportedCurrency

MICRO_DIGITS = 6
MICROS_PER_UNIT = 1_000_000  # 10**MICRO_DIGITS
# Every balance and transfer lives in a signed BIGINT column.
MAX_MICROS = 2**63 - 1

# ISO 4217 currencies we accept, with the number of digits of their own minor unit.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "SGD": 2,
    "HKD": 2,
    "MXN": 2,
    "BRL": 2,
    "INR": 2,
    "ZAR": 2,
    "JPY": 0,
    "KRW": 0,
}

_DECIMAL = re.compile(r"^(?P<sign>-?)(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?$")


def check_currency(code: str) -> str:
    """Return the ISO 4217 code if Refill supports it, else raise."""
    if code not in CURRENCY_EXPONENTS:
        raise UnsupportedCurrency(
            f"currency {code!r} is not supported; use one of "
            + ", ".join(sorted(CURRENCY_EXPONENTS))
        )
    return code


def minor_unit_micros(currency: str) -> int:
    """How many micro-units make one minor unit of ``currency`` (10_000 for a cent)."""
    exponent: int = CURRENCY_EXPONENTS[check_currency(currency)]
    return int(10 ** (MICRO_DIGITS - exponent))


def parse_amount(text: str, *, field: str = "amount", allow_negative: bool = False) -> int:
    """Parse a decimal string such as ``"25.00"`` into micro-units.

    Raises :class:`InvalidAmount` (a 422 with a stable code) for anything that is not a plain
    decimal string with at most six decimal places that fits a signed 64-bit integer.
    """
    if not isinstance(text, str):
        raise InvalidAmount(f'{field} must be a decimal string such as "25.00"', field=field)
    # Refuse very long input before the regex and int() see it.
    if len(text) > 40:
        raise InvalidAmount(f"{field} is too large", field=field)
    match = _DECIMAL.match(text)
    if match is None:
        raise InvalidAmount(
            f'{field} must be a decimal string such as "25.00" (got {text!r})', field=field
        )
    frac: str = match["frac"] or ""
    whole: str = match["whole"]
    if len(frac) > MICRO_DIGITS:
        raise InvalidAmount(
            f"{field} has more than {MICRO_DIGITS} decimal places (got {text!r})", field=field
        )
    micros = int(whole) * MICROS_PER_UNIT + int(frac.ljust(MICRO_DIGITS, "0") or "0")
    if micros > MAX_MICROS:
        raise InvalidAmount(f"{field} is too large (got {text!r})", field=field)
    if match["sign"]:
        if not allow_negative and micros != 0:
            raise InvalidAmount(f"{field} must not be negative (got {text!r})", field=field)
        micros = -micros
    return micros


def format_amount(micros: int, currency: str | None = None) -> str:
    """Format micro-units as a decimal string.

    With a currency, at least the currency's own minor digits are shown (``"25.00"``) and
    sub-cent precision only when present (``"0.012345"``); without one, all six digits.
    """
    min_digits = MICRO_DIGITS if currency is None else CURRENCY_EXPONENTS[currency]
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    digits = f"{frac:0{MICRO_DIGITS}d}".rstrip("0")
    digits = digits.ljust(min_digits, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def is_whole_minor_units(micros: int, currency: str) -> bool:
    """True when ``micros`` can be charged to a card (whole cents, whole yen, ...)."""
    return micros % minor_unit_micros(currency) == 0


def to_minor_units(micros: int, currency: str) -> int:
    """Micro-units to the currency's minor unit; the amount must already be whole."""
    unit = minor_unit_micros(currency)
    if micros % unit:
        raise InvalidAmount(
            f"{format_amount(micros, currency)} {currency} is not a whole number of "
            f"{currency} minor units"
        )
    return micros // unit


def round_up_to_minor_units(micros: int, currency: str) -> int:
    """Round up to the next whole minor unit (a charge never falls short)."""
    unit = minor_unit_micros(currency)
    return -(-micros // unit) * unit


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its currency, for the edges that need both together."""

    micros: int
    currency: str

    def __str__(self) -> str:
        return f"{format_amount(self.micros, self.currency)} {self.currency}"
