"""``python -m refill.cli``: the `refill` command."""

from refill.cli import app

app()
