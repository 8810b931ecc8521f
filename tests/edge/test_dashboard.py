"""The dashboard's HTTP side: what a real coordinator process answers for the page and its files.

The page itself is exercised in a real browser by ``test_dashboard_browser.py``; here the headers a browser
relies on (content types, the Content-Security-Policy, revalidation) and the guarantee that a request
never chooses a path on disk.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import httpx
from agentswarm import protocol as p
from agentswarm.coordinator.dashboard import CONTENT_SECURITY_POLICY, FRAMES_PLACEHOLDER

from .helpers import Swarm

EXPECTED_TYPES = {
    "/": "text/html; charset=utf-8",
    "/static/app.js": "text/javascript; charset=utf-8",
    "/static/connection.js": "text/javascript; charset=utf-8",
    "/static/store.js": "text/javascript; charset=utf-8",
    "/static/style.css": "text/css; charset=utf-8",
    "/static/icon.svg": "image/svg+xml",
}


def test_page_and_files_have_their_types_and_a_strict_policy(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    base = redis_swarm.http
    for path, content_type in EXPECTED_TYPES.items():
        r = httpx.get(f"{base}{path}")
        assert r.status_code == 200, path
        assert r.headers["content-type"] == content_type, path
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert int(r.headers["content-length"]) == len(r.content) > 0
        # Revalidation: the same ETag back gets 304 without a body.
        again = httpx.get(f"{base}{path}", headers={"If-None-Match": r.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and "unsafe" not in CONTENT_SECURITY_POLICY
    assert policy["frame-ancestors"] == "'none'"


def test_index_names_the_frames_this_coordinator_understands(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    page = httpx.get(f"{redis_swarm.http}/").text
    assert FRAMES_PLACEHOLDER not in page
    m = re.search(r'<meta name="agentswarm-frames" content="([^"]*)">', page)
    assert m is not None
    assert m.group(1).split() == list(p.CLIENT_FRAME_TYPES)
    # Nothing inline: the policy forbids it, so the page must not need it.
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert re.search(r"\son[a-z]+=", page) is None
    # Same page at /index.html; every file it references is served.
    assert httpx.get(f"{redis_swarm.http}/index.html").text == page
    for ref in re.findall(r'(?:src|href)="(static/[^"]+)"', page):
        assert httpx.get(f"{redis_swarm.http}/{ref}").status_code == 200, ref


def test_requests_never_choose_a_path(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    base = redis_swarm.http
    for path in (
        "/static/",
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/..%2fcoordinator%2fserver.py",
        "/static//etc/passwd",
        "/static/app.js.map",
        "/static/APP.JS",
        "/dashboard/static/app.js",
        "/static/app.js/",
    ):
        r = httpx.get(f"{base}{path}")
        assert r.status_code == 404, path
        assert "import" not in r.text


def test_every_file_of_the_page_ships_in_the_wheel() -> None:
    """agent_image/pyproject.toml's package-data patterns cover each static file (the image installs them)."""
    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "agent_image" / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["agentswarm"]
    static = resources.files("agentswarm").joinpath("dashboard", "static")
    names = [entry.name for entry in static.iterdir() if entry.is_file()]
    assert {"index.html", "app.js", "connection.js", "store.js", "style.css"} <= set(names)
    for name in names:
        shipped = f"dashboard/static/{name}"
        assert any(fnmatch(shipped, p) and shipped.count("/") == p.count("/") for p in patterns), shipped
