"""Rows to records: the one way a table row becomes one of the domain's frozen dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def record(cls: type[T], row: Any, **computed: Any) -> T:
    """``cls`` from the row's columns of the same names (a row mapping, or any mapping);
    ``computed`` gives the fields that are not stored as they are read (decoded JSON, an
    enum)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{name: computed[name] if name in computed else row[name] for name in names})
