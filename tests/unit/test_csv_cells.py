"""The CSV exports' cells: a text cell never reaches a spreadsheet as a formula (OWASP's
CSV injection rule), says exactly what it said otherwise, and survives the CSV round trip;
amounts are numbers and keep their minus sign."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refill.money import MAX_MICROS, format_amount
from refill.services.exports import csv_text, text_cell

# OWASP's list, written out here so the test does not trust the module's own.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# Any text, and often text that starts like a formula (or with the quote itself).
texts = st.one_of(
    st.text(),
    st.builds(str.__add__, st.sampled_from([*FORMULA_STARTS, "'"]), st.text()),
)


def read_back(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@given(texts)
def test_a_text_cell_read_back_never_starts_like_a_formula(value: str) -> None:
    [[cell]] = read_back(csv_text([[text_cell(value)]]))
    assert not cell.startswith(FORMULA_STARTS)
    if value.startswith(FORMULA_STARTS):
        assert cell == "'" + value
    else:
        assert cell == value


@given(st.lists(st.lists(texts, min_size=1, max_size=6), min_size=1, max_size=4))
def test_rows_of_text_cells_read_back_cell_for_cell(values: list[list[str]]) -> None:
    rows = [[text_cell(value) for value in row] for row in values]
    assert read_back(csv_text(rows)) == rows


@given(st.integers(min_value=-MAX_MICROS, max_value=MAX_MICROS))
def test_an_amount_cell_is_the_signed_number_unprefixed(micros: int) -> None:
    amount = format_amount(micros, "USD")
    [[cell, text]] = read_back(csv_text([[amount, text_cell(amount)]]))
    assert cell == amount
    assert cell.startswith("-") == (micros < 0)
    # The same string as a text cell would be prefixed: amounts must not go through it.
    assert text == ("'" + amount if micros < 0 else amount)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        pytest.param('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")', id="equals"),
        pytest.param("+1+1", "'+1+1", id="plus"),
        pytest.param("-2+3", "'-2+3", id="minus"),
        pytest.param("@SUM(A1:A2)", "'@SUM(A1:A2)", id="at"),
        pytest.param("\t=1", "'\t=1", id="tab"),
        pytest.param("\r=1", "'\r=1", id="carriage-return"),
        pytest.param("'=already quoted", "'=already quoted", id="quote-stays-one-quote"),
        pytest.param(" =1", " =1", id="leading-space-is-text"),
        pytest.param("Sales =1", "Sales =1", id="formula-inside"),
        pytest.param("", "", id="empty"),
        pytest.param(None, "", id="none"),
    ],
)
def test_text_cells_starting_like_a_formula_get_a_leading_quote(
    value: str | None, cell: str
) -> None:
    assert text_cell(value) == cell
