"""The dashboard: a static page served by the coordinator on its own port, live over the websocket API.

Why from the coordinator: the page then has the websocket API at the same origin, so it works wherever the
API works (``agentswarm local``, kind, behind the GKE load balancer) with a relative ``ws`` URL and no CORS,
and there is nothing else to deploy. The page holds no secret: it asks for the API token and sends it in the
protocol's first-frame ``auth``; the token never appears in a URL.

What a client sends never chooses a path: the files are read once from the package data into a table keyed
by their public path, and a request either names a key of that table or gets a 404. Every answer carries a
strict Content-Security-Policy (scripts, styles and websocket connections from this origin only, no inline
code, no framing), ``nosniff`` and an ``ETag`` so a browser revalidates instead of downloading again.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agentswarm import protocol as p

#: Content types of the files the dashboard ships (anything else in the package data is not served).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

#: The page's Content-Security-Policy: nothing inline, nothing from elsewhere, no framing, no forms posted.
#: ``connect-src 'self'`` allows the same-origin ``ws:``/``wss:`` URL (CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Placeholder in index.html replaced by the client frame types this coordinator understands, so the page
#: offers exactly the actions (cancel, answer, the swarm feed, ...) that the server it came from has.
FRAMES_PLACEHOLDER = "{{client_frames}}"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    root = resources.files("agentswarm").joinpath("dashboard", "static")
    assets: dict[str, Asset] = {}
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        if name == "index.html":
            frames = html.escape(" ".join(p.CLIENT_FRAME_TYPES), quote=True)
            body = body.replace(FRAMES_PLACEHOLDER.encode(), frames.encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        path = "/" if name == "index.html" else f"/static/{name}"
        assets[path] = Asset(body, CONTENT_TYPES[suffix], etag)
    if "/" not in assets:
        raise RuntimeError(f"the dashboard's index.html is missing from {root}")
    return assets


class Dashboard:
    """Answers ``GET /`` and ``GET /static/<file>`` from the package data; ``None`` for any other path."""

    def __init__(self) -> None:
        self.assets = _load_assets()

    def paths(self) -> list[str]:
        return sorted(self.assets)

    def respond(self, connection: ServerConnection, request: Request, path: str) -> Response | None:
        if path == "/index.html":
            path = "/"
        asset = self.assets.get(path)
        if asset is None:
            return None
        headers = Headers(
            {
                "Content-Type": asset.content_type,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cross-Origin-Opener-Policy": "same-origin",
                "Cache-Control": "no-cache",
                "ETag": asset.etag,
            }
        )
        if request.headers.get("If-None-Match") == asset.etag:
            response = connection.respond(HTTPStatus.NOT_MODIFIED, "")
            body = b""
        else:
            response = connection.respond(HTTPStatus.OK, "")
            body = asset.body
        # respond() sets text/plain defaults; headers is a multidict, so replace rather than append.
        for name in ("Content-Type", "Content-Length"):
            del response.headers[name]
        response.headers.update(headers)
        response.headers["Content-Length"] = str(len(body))
        response.body = body
        return response
