"""Token checks for the websocket API.

Two ways in, because browsers cannot set headers on a websocket handshake while CLI clients and
proxies can: an ``Authorization: Bearer <token>`` header on the upgrade request, or a first
``{"type": "auth", "token": ...}`` frame. Both compare in constant time.

Several tokens can be valid at once so that the token can be rotated without downtime: the token file
(``AGENTSWARM_API_TOKEN_FILE``, a mounted Secret) holds one token per line, e.g. the current and the next
one. The file is checked for changes at every authentication (one ``stat``) and re-read when it changed, so
an updated Secret takes effect without a restart. A changed file that cannot be read or holds no token
keeps the last good set (logged): a bad update never locks every client out.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from agentswarm.secret_files import read_token_file

log = logging.getLogger("agentswarm.coordinator")

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


class TokenSet:
    """The API tokens accepted now: fixed ones, or those of a token file re-read when it changes."""

    def __init__(self, tokens: Iterable[str] = (), path: Path | None = None) -> None:
        self.path = path
        self._tokens = tuple(t for t in tokens if t)
        self._stamp: tuple[int, int, int] | None = None
        if path is not None:
            self._reload(initial=True)
        if not self._tokens:
            raise ValueError("no API token: the coordinator refuses to serve without one")

    @property
    def tokens(self) -> tuple[str, ...]:
        self._refresh()
        return self._tokens

    def matches(self, offered: str | None) -> bool:
        """True when ``offered`` is one of the valid tokens (each compared in constant time)."""
        found = False
        for token in self.tokens:
            found |= token_matches(token, offered)  # no early exit: the time does not tell which one
        return found

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)  # follows the ..data symlink Kubernetes swaps on a Secret update
        except OSError as exc:
            log.error("API token file %s unreadable (%s); keeping the last good tokens", self.path, exc)
            return
        if (st.st_ino, st.st_mtime_ns, st.st_size) != self._stamp:
            self._reload()

    def _reload(self, initial: bool = False) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
            tokens = read_token_file(self.path)
        except OSError as exc:
            if initial:
                raise ValueError(f"cannot read the API token file {self.path}: {exc}") from None
            log.error("API token file %s unreadable (%s); keeping the last good tokens", self.path, exc)
            return
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not tokens:
            if initial:
                raise ValueError(f"the API token file {self.path} holds no token")
            log.error("API token file %s holds no token; keeping the last good tokens", self.path)
            return
        if not initial and tokens != self._tokens:
            log.info("API token file %s changed: %d valid token(s)", self.path, len(tokens))
        self._tokens = tokens
