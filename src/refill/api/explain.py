"""/v1/wallet/auto-reload/explain: why Auto Reload did (not) reload, evaluated now."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from refill.api.deps import Owner, Service
from refill.api.problems import problems
from refill.reload.explain import CheckName, Explanation, Verdict
from refill.services import explain as explaining

router = APIRouter(prefix="/v1/wallet", tags=["wallet"], responses=problems(401, 403))


class CheckOut(BaseModel):
    name: CheckName = Field(
        description="enabled, below_threshold, no_active_attempt, not_suspended, not_blocked, "
        "card_usable, no_retry_waiting; always all seven, in this order."
    )
    passed: bool = Field(description="True when this condition does not stop a reload.")
    detail: str = Field(
        description="One sentence: amounts as decimal strings with their currency, times in "
        "ISO 8601 UTC (a rail's or a retry's 'until')."
    )


class ExplanationOut(BaseModel):
    evaluated_at: datetime = Field(description="When the trigger rule was evaluated.")
    verdict: Verdict = Field(
        description="What the trigger rule says now: would_reload (a reload would start), "
        "blocked (a reload is due but a safety limit stops it), or why none starts: off, "
        "suspended, reload_in_progress, waiting_for_retry, paused_by_limit (a limit holds "
        "reloads until a time), incomplete (no threshold or reload amount), not_needed "
        "(available credits are not below the threshold), card_unusable (no card chosen)."
    )
    checks: list[CheckOut] = Field(description="Each condition of the rule, itemized.")

    @classmethod
    def of(cls, e: Explanation) -> ExplanationOut:
        return cls(
            evaluated_at=e.evaluated_at,
            verdict=e.verdict,
            checks=[CheckOut(name=c.name, passed=c.passed, detail=c.detail) for c in e.checks],
        )


@router.get("/auto-reload/explain", operation_id="explain_auto_reload")
def explain_auto_reload(p: Owner, refill: Service) -> ExplanationOut:
    """Why didn't it reload? The auto-reload trigger evaluated now, with the same rule the
    reload itself runs, and each of its checks. Computed on request: nothing is written."""
    return ExplanationOut.of(
        explaining.explain_auto_reload(refill.db, refill.policy, agency_id=p.agency_id)
    )
