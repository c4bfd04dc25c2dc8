"""/portal/team/receipts/{reload_id}: a receipt as a page that prints cleanly, and as a PDF
(fpdf2, pure Python, with an embedded Unicode font).

A receipt says what it said when it was issued: it is read from its frozen row, never
from the card or the agency as they are now.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fpdf import FPDF

from refill.errors import NotFound
from refill.notify import words
from refill.notify.receipts import Receipt
from refill.portal.common import PortalRefused, page
from refill.portal.security import Signed
from refill.services import members
from refill.services.receipts import get_receipt
from refill.webctx import Service

router = APIRouter(prefix="/portal", include_in_schema=False)
FONTS = Path(__file__).parent / "fonts"


def _receipt(refill: Service, agency_id: str, reload_id: str) -> Receipt:
    try:
        return get_receipt(refill.db, agency_id=agency_id, reload_id=reload_id)
    except NotFound:
        raise PortalRefused(404, "There is no receipt for this reload.") from None


def lines(receipt: Receipt) -> list[tuple[str, str]]:
    """What a receipt says, label and value, in the order it is printed."""
    return [
        ("Receipt", receipt.label),
        ("Date", f"{receipt.local_date} ({receipt.timezone})"),
        ("Billed to", receipt.agency_name),
        *([("Address", receipt.billing_address)] if receipt.billing_address else []),
        *([("Tax id", receipt.tax_id)] if receipt.tax_id else []),
        ("Description", receipt.description),
        ("Paid with", f"{receipt.card_brand.title()} ending {receipt.card_last4}"),
        ("Reload", receipt.attempt_id),
        ("Amount", f"{words.amount(receipt.amount, receipt.currency)} {receipt.currency}"),
    ]


@router.get("/team/receipts/{reload_id}")
def receipt_page(
    request: Request, session: Signed, refill: Service, reload_id: str
) -> HTMLResponse:
    receipt = _receipt(refill, session.agency_id, reload_id)
    context = {
        "session": session,
        "receipt": receipt,
        "lines": lines(receipt),
        "agencies": members.agencies_of(refill.db, user_id=session.user_id),
    }
    return page(request, "receipt.html", context)


@router.get("/team/receipts/{reload_id}/pdf")
def receipt_pdf(session: Signed, refill: Service, reload_id: str) -> Response:
    receipt = _receipt(refill, session.agency_id, reload_id)
    return Response(
        content=render_pdf(receipt),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{receipt.label}.pdf"'},
    )


def render_pdf(receipt: Receipt) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"Receipt {receipt.label}")
    pdf.set_author("Refill")
    pdf.set_creation_date(receipt.issued_at)
    pdf.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.add_page()
    pdf.set_margins(20, 20, 20)
    pdf.set_font("DejaVu", "B", 20)
    pdf.cell(0, 12, f"Receipt {receipt.label}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    pdf.cell(0, 6, "Credits for your Refill wallet", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    for label, value in lines(receipt):
        pdf.set_font("DejaVu", "B", 11)
        pdf.cell(40, 7, label)
        pdf.set_font("DejaVu", "", 11)
        pdf.multi_cell(0, 7, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("DejaVu", "", 9)
    pdf.multi_cell(
        0,
        5,
        "Paid in full by card. This receipt records the charge as it was made; later "
        "changes to the card or to the billing details do not change it.",
    )
    return bytes(pdf.output())
