"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, for the tests
that prove what Refill e-mails: recipients, subject, and the facts in the body."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    to: list[str]
    subject: str
    text: str
    html: str
    message: EmailMessage
    at: float  # time.monotonic() when the server took it


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.box.refuse:
            return "451 try again later"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        self.box.add(
            Received(
                to=sorted(envelope.rcpt_tos),
                subject=str(parsed["Subject"]),
                text=text.get_content() if text else "",
                html=html.get_content() if html else "",
                message=parsed,
                at=time.monotonic(),
            )
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.refuse = False  # answer 451 to every message (the server "is down")
        self._changed = threading.Condition()
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> Mailbox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def add(self, received: Received) -> None:
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """The first ``count`` messages, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    subjects = [m.subject for m in self.messages]
                    raise AssertionError(f"{len(self.messages)} of {count} e-mails: {subjects}")
                self._changed.wait(left)
            return list(self.messages[:count])

    def first(self, to: str, timeout: float = 15.0) -> Received:
        """The first message to this address, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.messages:
                    if to in message.to:
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no e-mail to {to}: {[m.to for m in self.messages]}")
                self._changed.wait(left)

    def about(self, words: str) -> list[Received]:
        return [m for m in self.messages if words in m.subject]
