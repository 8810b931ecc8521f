"""The client's exception tree, and how a dropped connection is told apart and described for a retry."""

from __future__ import annotations

from websockets.exceptions import ConnectionClosed


class ClientError(RuntimeError):
    """A failure that retrying will not fix (bad token, invalid request, retries exhausted)."""


class AuthError(ClientError):
    """The coordinator refused the token."""


class CertificateError(ClientError):
    """The coordinator's TLS certificate did not verify (unknown CA, wrong hostname, expired)."""


class _Dropped(Exception):
    """The connection ended mid-operation; ``progressed`` says whether it got anything done first."""

    def __init__(self, reason: str, progressed: bool) -> None:
        super().__init__(reason)
        self.progressed = progressed


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            return f"closed by server with {rcvd.code} {rcvd.reason!r}".strip()
        return "connection dropped without a close frame"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
