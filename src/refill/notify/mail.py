"""E-mail over SMTP: who is told, what the message says, and sending it.

``REFILL_SMTP_URL`` is ``smtp://[user:pass@]host:port`` (``smtps://`` for TLS from the
start, ``?starttls=true`` to upgrade). Without it, e-mail stays in the outbox undelivered
(``refill emails list``); in development (``REFILL_PUBLIC_URL`` on loopback) each message's
full text is written to the log instead, so reset and invitation links never land in a
production log. Messages are built when they are sent, from Jinja2 templates (plain text
and HTML, ``email.message.EmailMessage``): the outbox keeps the template and its
parameters, never a secret (a link's token is derived from the server's key then).
"""

from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import or_, select, update

from refill import metrics
from refill.db.database import Tx
from refill.db.schema import agencies, emails, memberships, users
from refill.keyring import Keyring
from refill.notify import words
from refill.roles import MemberRole

log = logging.getLogger("refill.mail")

HERE = Path(__file__).parent / "mail_templates"
# StrictUndefined: a template naming data its event does not carry fails in the tests,
# instead of sending an e-mail with a hole in it.
_env = Environment(
    loader=FileSystemLoader(HERE),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_text_env = Environment(
    loader=FileSystemLoader(HERE),
    autoescape=False,  # noqa: S701  plain text, never HTML
    undefined=StrictUndefined,
)

# Which templates a person may turn off on the billing page; the rest always go out.
CHOICE_OF = {"receipt": "receipt_emails", "low_balance": "low_balance_emails"}
RAIL_NAMES = {"daily_limit": "daily reload limit", "monthly_cap": "monthly spending cap"}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: bool
    starttls: bool
    user: str | None
    password: str | None


def smtp_config(url: str) -> SmtpConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("REFILL_SMTP_URL must be smtp://host:port or smtps://host:port")
    query = parse_qs(parts.query)
    return SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        tls=parts.scheme == "smtps",
        starttls=query.get("starttls", ["false"])[0].lower() == "true",
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def on_loopback(public_url: str) -> bool:
    host = urlsplit(public_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Message:
    to: list[str]
    subject: str
    text: str
    html: str


class Mailer:
    def __init__(
        self,
        *,
        smtp_url: str | None,
        sender: str,
        public_url: str,
        keyring: Keyring,
    ) -> None:
        self.smtp = smtp_config(smtp_url) if smtp_url else None
        self.sender = sender
        self.public_url = public_url.rstrip("/")
        self.keyring = keyring
        self.development = on_loopback(public_url)

    # --- building ----------------------------------------------------------------------

    def render(self, template: str, params: dict[str, Any], agency: dict[str, Any]) -> Message:
        currency = str(params.get("currency") or agency.get("currency") or "USD")
        zone = str(agency.get("timezone") or "UTC")
        context = {
            **params,
            "agency_name": agency.get("name", "Refill"),
            "money": lambda value: words.amount(value, currency),
            "time": lambda value: words.moment(value, zone),
            "decline": words.decline,
            "link": lambda path: self.public_url + path,
            "rail_name": RAIL_NAMES.get(str(params.get("rail")), params.get("rail")),
            "token": self._token(template, params),
        }
        compiled = _text_env.get_template(f"{template}.txt")
        blocks = {
            name: "".join(render(compiled.new_context(context))).strip()
            for name, render in compiled.blocks.items()
        }
        url, _, label = blocks.get("action", "").partition("|")
        paragraphs = [p.strip() for p in blocks["body"].split("\n\n") if p.strip()]
        text = blocks["body"] + (f"\n\n{label}: {url}" if url else "")
        html = _env.get_template("_layout.html").render(
            subject=blocks["subject"],
            paragraphs=paragraphs,
            action_url=url,
            action_label=label,
            agency_name=context["agency_name"],
        )
        return Message([], " ".join(blocks["subject"].split()), text, html)

    def _token(self, template: str, params: dict[str, Any]) -> str | None:
        if template == "invitation":
            return self.keyring.token("invitation", str(params["invitation_id"]))
        if template == "password_reset":
            return self.keyring.token("password-reset", str(params["reset_id"]))
        return None

    # --- sending -----------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.smtp is None:
            raise RuntimeError("no SMTP server configured")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(message.to)
        mail["Subject"] = message.subject
        mail["Message-ID"] = make_msgid(domain="refill")
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        smtp = self.smtp
        client_type = smtplib.SMTP_SSL if smtp.tls else smtplib.SMTP
        with client_type(smtp.host, smtp.port, timeout=30) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(mail)


# --- what the outbox holds -----------------------------------------------------------------


def recipients(tx: Tx, agency_id: str, template: str) -> list[str]:
    """The agency's owners and admins (as each chose, for the templates they may turn off)
    and its billing addresses."""
    choice = CHOICE_OF.get(template)
    stmt = (
        select(users.c.email)
        .join(memberships, memberships.c.user_id == users.c.id)
        .where(
            memberships.c.agency_id == agency_id,
            memberships.c.role.in_((MemberRole.OWNER, MemberRole.ADMIN)),
        )
    )
    if choice is not None:
        stmt = stmt.where(memberships.c[choice].is_(True))
    people = list(tx.conn.execute(stmt).scalars())
    extra = tx.conn.execute(
        select(agencies.c.billing_emails).where(agencies.c.id == agency_id)
    ).scalar()
    billing = json.loads(extra) if extra else []
    return sorted(set(people) | set(billing))


def agency_context(tx: Tx, agency_id: str | None) -> dict[str, Any]:
    if agency_id is None:
        return {}
    row = tx.conn.execute(
        select(agencies.c.name, agencies.c.currency, agencies.c.timezone).where(
            agencies.c.id == agency_id
        )
    ).one()
    return {"name": row.name, "currency": row.currency, "timezone": row.timezone}


@dataclass(frozen=True, slots=True)
class Outgoing:
    email_id: str
    message: Message


# Waits before each new try of an e-mail the SMTP server refused or did not take.
RETRIES = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)


def prepare(
    tx: Tx, mailer: Mailer, email_id: str, *, lease_seconds: float = 60.0
) -> Outgoing | None:
    """Claim a due e-mail and build its message; None when not due or another has it."""
    row = tx.conn.execute(
        update(emails)
        .where(
            emails.c.id == email_id,
            emails.c.status == "pending",
            emails.c.next_attempt_at <= tx.now,
            or_(emails.c.lease_until.is_(None), emails.c.lease_until <= tx.now),
        )
        .values(lease_until=tx.now + timedelta(seconds=lease_seconds))
        .returning(emails.c.agency_id, emails.c.template, emails.c.params, emails.c.to_addresses)
    ).one_or_none()
    if row is None:
        return None
    to = (
        json.loads(row.to_addresses)
        if row.to_addresses
        else (recipients(tx, row.agency_id, row.template) if row.agency_id else [])
    )
    message = mailer.render(row.template, json.loads(row.params), agency_context(tx, row.agency_id))
    return Outgoing(email_id, Message(to, message.subject, message.text, message.html))


def record_sent(tx: Tx, email_id: str) -> None:
    tx.conn.execute(
        update(emails)
        .where(emails.c.id == email_id)
        .values(status="sent", sent_at=tx.now, lease_until=None, attempts=emails.c.attempts + 1)
    )
    tx.announce(metrics.EmailOutcome("sent"))


def record_failure(tx: Tx, email_id: str, error: str) -> None:
    """Retried on ``RETRIES``; after the last, failed for good (and logged)."""
    attempts = (
        int(tx.conn.execute(select(emails.c.attempts).where(emails.c.id == email_id)).scalar_one())
        + 1
    )
    wait = RETRIES[attempts - 1] if attempts <= len(RETRIES) else None
    tx.conn.execute(
        update(emails)
        .where(emails.c.id == email_id)
        .values(
            status="pending" if wait is not None else "failed",
            attempts=attempts,
            last_error=error[:500],
            lease_until=None,
            next_attempt_at=None if wait is None else tx.now + wait,
        )
    )
    tx.announce(metrics.EmailOutcome("retrying" if wait is not None else "failed"))
    if wait is None:
        log.error("e-mail %s could not be sent after %d tries: %s", email_id, attempts, error)


def due_emails(tx: Tx, limit: int) -> list[str]:
    return list(
        tx.conn.execute(
            select(emails.c.id)
            .where(
                emails.c.status == "pending",
                emails.c.next_attempt_at <= tx.now,
                or_(emails.c.lease_until.is_(None), emails.c.lease_until <= tx.now),
            )
            .order_by(emails.c.next_attempt_at)
            .limit(limit)
        ).scalars()
    )
