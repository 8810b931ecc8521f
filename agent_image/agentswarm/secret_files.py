"""Secrets read from files: how pods receive them (a mounted Kubernetes Secret), never as env values.

Env values leak into ``/proc/<pid>/environ``, crash reports and ``kubectl describe``; a file is read by the
one process that needs it, and a mounted Secret is updated in place when the Secret changes.
"""

from __future__ import annotations

from pathlib import Path


def read_secret_file(path: Path) -> str:
    """The file's content without surrounding whitespace (``echo`` and editors add a newline)."""
    return path.read_text(encoding="utf-8").strip()


def read_token_file(path: Path) -> tuple[str, ...]:
    """The tokens of a token file: one per line, blanks stripped, empty and ``#`` lines skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))
