"""What every web route (API or billing page) may depend on: the service it serves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from refill.bootstrap import Refill


def refill_of(request: Request) -> Refill:
    service: Refill = request.app.state.refill
    return service


Service = Annotated[Refill, Depends(refill_of)]
