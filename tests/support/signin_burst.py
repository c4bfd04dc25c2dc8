"""Sign-in under a burst, against a real `refill serve`: how many guesses are checked, and
how much memory the server needs while it checks them.

- **Guessing burst**: ``guesses`` wrong passwords and the right one, all at once, for one
  e-mail. The limit is 5 failures per e-mail; every guess that is not refused with 429 was
  checked against the password hash.
- **Anonymous burst**: ``anonymous`` sign-ins at once for e-mails that have no account,
  each from its own address (``X-Forwarded-For``, which `refill serve` trusts from
  loopback), so no per-address limit spares the server a hash. Its peak resident memory
  (``VmHWM``) is read from /proc before and after.

``python -m tests.support.signin_burst`` prints both as JSON (SQLite in a temp folder).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from tests.support.server import Server

REFILL = str(Path(sys.executable).parent / "refill")
EMAIL = "owner@burst.example"
PASSWORD = "the right password, long enough"


@dataclass
class BurstFigures:
    guesses_sent: int
    guesses_checked: int
    statuses: dict[str, int]
    right_password_signed_in: bool
    anonymous_sent: int
    anonymous_statuses: dict[str, int]
    rss_before_kib: int
    peak_rss_kib: int


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _login_form(base: str) -> tuple[str, str]:
    page = httpx.get(f"{base}/portal/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return page.cookies["refill_login_csrf"], token.group(1)


def _burst(base: str, attempts: list[tuple[str, str]], *, spread: bool = False) -> list[int]:
    cookie, token = _login_form(base)
    barrier = threading.Barrier(len(attempts))
    statuses: list[int] = [0] * len(attempts)

    def one(i: int, email: str, password: str) -> None:
        headers = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"} if spread else {}
        with httpx.Client(base_url=base, timeout=120, cookies={"refill_login_csrf": cookie}) as c:
            barrier.wait()
            response = c.post(
                "/portal/login",
                data={"email": email, "password": password, "csrf_token": token},
                headers=headers,
            )
            statuses[i] = response.status_code

    threads = [
        threading.Thread(target=one, args=(i, email, password))
        for i, (email, password) in enumerate(attempts)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def measure(database_url: str, *, guesses: int = 29, anonymous: int = 40) -> BurstFigures:
    created = subprocess.run(
        [
            REFILL,
            "agency",
            "create",
            "--name",
            "Burst",
            "--owner-email",
            EMAIL,
            "--password-stdin",
            "--json",
        ],
        input=PASSWORD + "\n",
        env={**__import__("os").environ, "REFILL_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(created.stdout)["owner_email"] == EMAIL
    server = Server(database_url)
    try:
        server.wait_ready()
        attempts = [(EMAIL, f"wrong guess {i:03d}") for i in range(guesses)]
        attempts.insert(guesses // 2, (EMAIL, PASSWORD))
        statuses = _burst(server.base, attempts)
        counted = Counter(str(s) for s in statuses)
        right = statuses[guesses // 2]
        rss_before = _proc_kib(server.proc.pid, "VmRSS")
        anon = _burst(
            server.base,
            [(f"nobody{i}@burst.example", "some wrong password") for i in range(anonymous)],
            spread=True,
        )
        peak = _proc_kib(server.proc.pid, "VmHWM")
    finally:
        server.stop()
    return BurstFigures(
        guesses_sent=len(attempts),
        guesses_checked=sum(1 for s in statuses if s != 429),
        statuses=dict(counted),
        right_password_signed_in=right == 303,
        anonymous_sent=anonymous,
        anonymous_statuses=dict(Counter(str(s) for s in anon)),
        rss_before_kib=rss_before,
        peak_rss_kib=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'burst.db'}"
        subprocess.run(
            [REFILL, "db", "upgrade"],
            env={**__import__("os").environ, "REFILL_DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        print(json.dumps(asdict(measure(url))))  # noqa: T201  the measurement's output


if __name__ == "__main__":
    main()
