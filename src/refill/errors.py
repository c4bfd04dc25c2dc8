"""One error family. Domain code raises these; the API turns them into problem+json.

Every error carries a stable machine-readable ``code`` (part of the API contract: clients
branch on it), a human sentence, and the HTTP status the API answers with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn


class RefillError(Exception):
    code = "refill_error"
    status = 400
    title = "Request failed"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


def refuse_all(wrong: Sequence[RefillError]) -> NoReturn:
    """Refuse with every error at once (the first, carrying ``errors``: each field and its
    message), so a form can show each next to its own field."""
    first = wrong[0]
    first.extra["errors"] = [{"field": e.extra.get("field"), "message": e.message} for e in wrong]
    raise first


class ValidationFailed(RefillError):
    code = "validation_error"
    status = 422
    title = "Invalid request"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"


class UnsupportedCurrency(ValidationFailed):
    code = "unsupported_currency"


class InvalidSettings(ValidationFailed):
    code = "invalid_auto_reload_settings"


class Unauthenticated(RefillError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class Forbidden(RefillError):
    code = "forbidden"
    status = 403
    title = "Not allowed"


class NotFound(RefillError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(RefillError):
    code = "conflict"
    status = 409
    title = "Conflict"


class ReferenceConflict(Conflict):
    code = "reference_conflict"


class TooManyAttempts(RefillError):
    """Come back later: a rate limit, or the server is busy with the same work."""

    code = "too_many_attempts"
    status = 429
    title = "Too many attempts"


class InsufficientCredits(RefillError):
    code = "insufficient_credits"
    status = 402
    title = "Insufficient credits"


class PaymentFailed(RefillError):
    """A manual charge the gateway refused; the attempt is recorded, nothing is credited."""

    code = "payment_failed"
    status = 402
    title = "Payment failed"


class InvalidPaymentMethod(ValidationFailed):
    code = "invalid_payment_method"


class InvalidWebhook(RefillError):
    """A webhook whose signature, timestamp or body does not check out: nothing is done."""

    code = "invalid_webhook"
    status = 400
    title = "Webhook rejected"


class GatewayUnavailable(RefillError):
    """The payment gateway did not answer (network, 5xx) or is not configured."""

    code = "gateway_unavailable"
    status = 503
    title = "Payment gateway unavailable"
