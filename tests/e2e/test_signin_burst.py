"""Sign-in under bursts, against a real `refill serve` on SQLite and PostgreSQL: a burst of
guesses for one e-mail has at most the limit checked, whatever the order, and a burst of
anonymous sign-ins is answered (401 or 429), never with a 5xx."""

from __future__ import annotations

from refill.services.sessions import MAX_FAILURES
from tests.support.signin_burst import measure


def test_a_burst_of_guesses_has_at_most_the_limit_checked_and_never_breaks_the_server(
    db_url: str,
) -> None:
    figures = measure(db_url, guesses=29, anonymous=40)

    # At most the limit of wrong guesses is checked; the right one, when it is among the
    # checked, takes only itself off the count.
    assert figures.statuses.get("401", 0) <= MAX_FAILURES, figures
    assert figures.guesses_checked <= MAX_FAILURES + 1, figures
    assert set(figures.statuses) <= {"401", "303", "429"}, figures
    # The right password signed in only if it was among the guesses checked.
    assert figures.right_password_signed_in == ("303" in figures.statuses)
    # Strangers from 40 addresses: each is checked (401) or told to come back (429).
    assert set(figures.anonymous_statuses) <= {"401", "429"}, figures
