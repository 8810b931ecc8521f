"""Token checks for the websocket API.

Two ways in, because browsers cannot set headers on a websocket handshake while CLI clients and
proxies can: an ``Authorization: Bearer <token>`` header on the upgrade request, or a first
``{"type": "auth", "token": ...}`` frame. Both compare in constant time.
"""

from __future__ import annotations

import hmac

#: Seconds a connection without a bearer header has to send its auth frame.
DEFAULT_AUTH_TIMEOUT_SECONDS = 10.0


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison; an empty expected token never matches (no accidental open door)."""
    if not expected or offered is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None`` when absent/other scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
