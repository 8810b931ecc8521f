"""Paths in the stack config are relative to the project root (where Pulumi.yaml is), never to a working
directory.

Pulumi runs a program and its providers in the program directory (``main:``), which is not the project root
when ``main`` names a subdirectory (the bundled project's ``infra/``); a user's own project usually has its
program at the root. Resolving every configured path against :func:`pulumi.get_root_directory` makes
``image.build.context: .`` mean the same in both.
"""

from __future__ import annotations

import os

import pulumi


def project_path(path: str) -> str:
    """``path`` joined to the project root when relative; unchanged when absolute or without an engine
    (Pulumi mocks report no root)."""
    root = pulumi.get_root_directory()
    if os.path.isabs(path) or not root:
        return path
    return os.path.normpath(os.path.join(root, path))
