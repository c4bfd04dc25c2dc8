"""Payment gateways behind one interface; results are small frozen dataclasses."""

from refill.gateway.base import (
    CardDetails,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    PaymentGateway,
)

__all__ = ["CardDetails", "ChargeRequest", "ChargeResult", "ChargeStatus", "PaymentGateway"]
