"""/healthz and /readyz: is the process up, does the database answer."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from refill.api.deps import Service
from refill.api.problems import problem

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(refill: Service) -> Response:
    try:
        refill.db.read(lambda tx: tx.conn.execute(text("SELECT 1")).scalar())
    except Exception:
        return problem(503, "database_unavailable", "Not ready", "the database does not answer")
    return JSONResponse({"status": "ready"})
