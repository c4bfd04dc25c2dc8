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
from decimal import Decimal

from babel.numbers import format_currency, get_currency_symbol

from refill.errors import InvalidAmount, UnsupportedCurrency, ValidationFailed

MICRO_DIGITS = 6
MICROS_PER_UNIT = 1_000_000  # 10**MICRO_DIGITS
# Every balance and transfer lives in a signed BIGINT column.
MAX_MICROS = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency Refill accepts: its minor unit, and the bounds of what an owner
    may set for a wallet in it (a reload, a threshold, a monthly cap), in micro-units."""

    code: str
    exponent: int  # digits of the minor unit: 2 for cents, 0 for yen
    minor_unit: str  # what one calls the minor unit, plural: "cents", "yen"
    min_reload: int
    max_reload: int
    max_threshold: int
    max_monthly_cap: int


def _currency(code: str, exponent: int, minor_unit: str, scale: int) -> Currency:
    """Bounds scaled from USD's (reload 5.00 to 10,000.00, threshold at most 10,000.00,
    monthly cap at most 1,000,000.00) by ``scale``: about how many units make a dollar,
    rounded to a figure an owner recognizes."""
    unit = MICROS_PER_UNIT * scale
    return Currency(
        code, exponent, minor_unit, 5 * unit, 10_000 * unit, 10_000 * unit, 1_000_000 * unit
    )


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        _currency("USD", 2, "cents", 1),
        _currency("EUR", 2, "cents", 1),
        _currency("GBP", 2, "pence", 1),
        _currency("CAD", 2, "cents", 1),
        _currency("AUD", 2, "cents", 1),
        _currency("NZD", 2, "cents", 1),
        _currency("CHF", 2, "centimes", 1),
        _currency("SEK", 2, "öre", 10),
        _currency("NOK", 2, "øre", 10),
        _currency("DKK", 2, "øre", 10),
        _currency("PLN", 2, "grosze", 5),
        _currency("CZK", 2, "haléře", 25),
        _currency("SGD", 2, "cents", 1),
        _currency("HKD", 2, "cents", 10),
        _currency("MXN", 2, "centavos", 20),
        _currency("BRL", 2, "centavos", 5),
        _currency("INR", 2, "paise", 100),
        _currency("ZAR", 2, "cents", 20),
        _currency("JPY", 0, "yen", 100),
        _currency("KRW", 0, "won", 1000),
    )
}

# One spelling per number: no sign but a minus, no leading zeros ("007", "00"), at most one
# point with digits on both sides. ``fullmatch`` so that "5\n" is not "5".
_DECIMAL = re.compile(r"(?P<sign>-?)(?P<whole>0|[1-9][0-9]*)(?:\.(?P<frac>[0-9]+))?")


def check_currency(code: str) -> str:
    """Return the ISO 4217 code if Refill supports it, else raise."""
    if code not in CURRENCIES:
        raise UnsupportedCurrency(
            f"currency {code!r} is not supported; use one of " + ", ".join(sorted(CURRENCIES))
        )
    return code


def currency_info(code: str) -> Currency:
    return CURRENCIES[check_currency(code)]


def minor_unit_micros(currency: str) -> int:
    """How many micro-units make one minor unit of ``currency`` (10_000 for a cent)."""
    return int(10 ** (MICRO_DIGITS - currency_info(currency).exponent))


def parse_amount(text: str, *, field: str = "amount", allow_negative: bool = False) -> int:
    """Parse a decimal string such as ``"25.00"`` into micro-units.

    Raises :class:`InvalidAmount` (a 422 with a stable code) for anything that is not a plain
    decimal string with at most six decimal places that fits a signed 64-bit integer, and
    for the other spellings of a number (``"-0"``, ``"007"``, ``"5\\n"``).
    """
    if not isinstance(text, str):
        raise InvalidAmount(f'{field} must be a decimal string such as "25.00"', field=field)
    # Refuse very long input before the regex and int() see it.
    if len(text) > 40:
        raise InvalidAmount(f"{field} is too large", field=field)
    match = _DECIMAL.fullmatch(text)
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
        if micros == 0:
            raise InvalidAmount(f"{field} must not be a negative zero (got {text!r})", field=field)
        if not allow_negative:
            raise InvalidAmount(f"{field} must not be negative (got {text!r})", field=field)
        micros = -micros
    return micros


# What a person types in a form, once its currency sign or code is gone: digits with
# thousands separators in groups of three, or without them, and an optional fraction.
_TYPED = re.compile(r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?P<frac>\.[0-9]*)?")
LOCALE = "en_US"


def parse_typed_amount(text: str, currency: str, *, field: str = "amount") -> int:
    """An amount as a person types it on the billing page (``"$30"``, ``"1,000.50"``,
    ``"30 USD"``) into micro-units; what is left after the currency's sign or code and the
    thousands separators must be what ``parse_amount`` accepts. The API stays strict."""
    cleaned = text.strip()
    marks = sorted({currency, get_currency_symbol(currency, locale=LOCALE)}, key=len, reverse=True)
    for mark in marks:
        if cleaned.upper().startswith(mark.upper()):
            cleaned = cleaned[len(mark) :].strip()
            break
        if cleaned.upper().endswith(mark.upper()):
            cleaned = cleaned[: -len(mark)].strip()
            break
    typed = _TYPED.fullmatch(cleaned)
    if typed is None:
        raise InvalidAmount(
            f'{field} must be an amount such as "25.00" or "1,000.50" (got {text.strip()!r})',
            field=field,
        )
    whole = typed["whole"].replace(",", "").lstrip("0") or "0"
    frac = (typed["frac"] or "").rstrip(".")
    return parse_amount(whole + frac, field=field)


def display_amount(micros: int, currency: str) -> str:
    """An amount in a person's words, ``$40.00`` (Babel's currency formatting), keeping
    sub-cent digits where there are some (usage is metered in micro-units)."""
    value = Decimal(format_amount(micros, currency))
    return str(format_currency(value, currency, locale=LOCALE, decimal_quantization=False))


def format_amount(micros: int, currency: str | None = None) -> str:
    """Format micro-units as a decimal string.

    With a currency, at least the currency's own minor digits are shown (``"25.00"``) and
    sub-cent precision only when present (``"0.012345"``); without one, all six digits.
    """
    min_digits = MICRO_DIGITS if currency is None else CURRENCIES[currency].exponent
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    digits = f"{frac:0{MICRO_DIGITS}d}".rstrip("0")
    digits = digits.ljust(min_digits, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def is_whole_minor_units(micros: int, currency: str) -> bool:
    """True when ``micros`` can be charged to a card (whole cents, whole yen, ...)."""
    return micros % minor_unit_micros(currency) == 0


def require_whole_minor_units(
    micros: int, currency: str, field: str, *, error: type[ValidationFailed] = InvalidAmount
) -> None:
    """Refuse an amount a card cannot be charged, in the currency's own words."""
    if not is_whole_minor_units(micros, currency):
        unit = currency_info(currency).minor_unit
        raise error(
            f"{field} must be a whole number of {unit} (cards are charged in whole {unit}; "
            f"got {format_amount(micros, currency)} {currency})",
            field=field,
        )


def to_minor_units(micros: int, currency: str) -> int:
    """Micro-units to the currency's minor unit; the amount must already be whole."""
    require_whole_minor_units(micros, currency, "amount")
    return micros // minor_unit_micros(currency)


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
