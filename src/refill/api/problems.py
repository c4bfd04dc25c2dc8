"""Errors as ``application/problem+json`` (RFC 9457), in one place.

Every refusal the API gives has a stable ``code`` clients branch on: the domain's
``RefillError`` family, request validation, and the HTTP layer's own (unknown route, wrong
method, body too large). A 500 says nothing about the inside and is logged.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from refill.errors import RefillError
from refill.money import format_amount

log = logging.getLogger("refill.api")

PROBLEM = "application/problem+json"

_STATUS_CODES = {
    400: "malformed_json",  # the body could not be parsed (e.g. a 5000-digit number)
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class Problem(BaseModel):
    """Every refusal (RFC 9457 problem+json). Branch on ``code``: it is stable."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable reason, e.g. invalid_amount.")


_MEANINGS = {
    400: "Malformed request (e.g. malformed_json, invalid_webhook).",
    401: "No valid API key (unauthenticated).",
    402: "Not enough credits, or the card was declined (insufficient_credits, payment_failed).",
    403: "The key may not do this (forbidden).",
    404: "No such object in this agency (e.g. subteam_not_found, reload_not_found).",
    409: "Conflicts with the current state (e.g. reference_conflict, idempotency_key_in_use).",
    413: "The body is larger than the server accepts (request_too_large).",
    422: "Invalid input (validation_error, invalid_amount, invalid_cursor, ...).",
    503: "The payment gateway or database did not answer (gateway_unavailable).",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem+json answers an operation declares, for its OpenAPI document."""
    return {
        status: {
            "model": Problem,
            "description": _MEANINGS[status],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


class Refused(StarletteHTTPException):
    """A refusal raised below the router (the request guard), with its stable code.

    An ``HTTPException`` so that FastAPI's body parsing lets it through as it is."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, detail)
        self.code = code


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:refill:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def refused(exc: StarletteHTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, HTTPStatus(exc.status_code).phrase, str(exc.detail))


def refill_problem(exc: RefillError) -> JSONResponse:
    extra = {k: v for k, v in exc.extra.items() if v is not None}
    if isinstance(extra.get("available"), int):
        currency = extra.pop("currency", None)
        extra["available"] = format_amount(extra["available"], currency)
    headers = None
    if "retry_after" in extra:
        headers = {"Retry-After": str(extra.pop("retry_after"))}
    return problem(exc.status, exc.code, exc.title, exc.message, headers=headers, **extra)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RefillError)
    async def _refill_error(_: Request, exc: RefillError) -> JSONResponse:
        return refill_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body"),
                "message": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                400, "malformed_json", "Malformed JSON", "the request body is not valid JSON"
            )
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        code = (
            "invalid_characters"
            if any(e["type"] == "nul_character" for e in errors)
            else ("validation_error")
        )
        return problem(422, code, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return refused(exc)

    app.exception_handler(Exception)(unexpected_problem)


async def unexpected_problem(_: Request, exc: Exception) -> JSONResponse:
    """A bug, not the caller's fault: logged, and nothing about the inside is said."""
    log.exception("unexpected error", exc_info=exc)
    return problem(
        500,
        "internal_error",
        "Internal error",
        "something went wrong on our side; nothing was charged twice",
    )
