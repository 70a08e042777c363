"""Pairing a phone with the chair (docs/web.md, Pairing).

The daemon has one pairing token: ``--web-token``, else ``CHAIR_WEB_TOKEN``, else the one kept in
the chair's database (made on first use, so a phone stays paired across restarts), else a fresh
one for this run. `chair serve --web` prints the pairing address ``http://HOST:PORT/?token=T`` and
its QR code; opening it sets an HttpOnly cookie that carries the token from then on.
"""

from __future__ import annotations

import hmac
import re
import secrets
import socket
from typing import TextIO

import segno

COOKIE = "chair_pairing"
"""The cookie that carries the token (HttpOnly, SameSite=Strict)."""
ENV_TOKEN = "CHAIR_WEB_TOKEN"
TOKEN_BYTES = 16
"""A new token's randomness: 128 bits, 22 URL-safe characters."""
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
"""What a token may be: 16-128 URL-safe characters (so it travels in a URL and a cookie as is)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_token(token: str) -> str:
    """`token` if it is a usable pairing token; ValueError saying why not."""
    if not TOKEN_RE.match(token):
        raise ValueError(
            "a pairing token is 16-128 characters of A-Z, a-z, 0-9, '-' and '_' "
            f"(got {len(token)} character(s))"
        )
    return token


def token_matches(offered: str | None, token: str) -> bool:
    """Constant-time comparison: a wrong guess learns nothing from the time it took."""
    if offered is None or len(offered) > 256:
        return False
    return hmac.compare_digest(offered.encode(), token.encode())


def pairing_url(host: str, port: int, token: str) -> str:
    """The address a phone opens: a wildcard bind shows this machine's address on its LAN."""
    if host in ("0.0.0.0", "::", ""):
        host = _lan_address()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def print_pairing(url: str, out: TextIO) -> None:
    """The pairing address and its QR code, for a phone's camera."""
    out.write(f"web remote: open {url}\n(or scan this with the phone's camera)\n")
    segno.make(url, error="m").terminal(out=out, compact=True)
    out.flush()


def _lan_address() -> str:
    """This machine's address toward its LAN (no packet is sent); its name when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            return str(s.getsockname()[0])
        except OSError:
            return socket.gethostname()
