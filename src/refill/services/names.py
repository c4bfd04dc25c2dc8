"""Names people give things (agencies, subteams): trimmed, not empty, not too long."""

from __future__ import annotations

from refill.errors import ValidationFailed


def clean_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed(f"{what} name must not be empty", field="name")
    if len(name) > 200:
        raise ValidationFailed(f"{what} name is longer than 200 characters", field="name")
    return name
