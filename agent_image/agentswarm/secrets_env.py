"""Secrets delivered as files become the environment variables handlers expect.

Model keys (``OPENAI_API_KEY`` ...) must not sit in a pod spec, so the components mount them as files from a
Kubernetes Secret (or GKE's Secret Manager CSI driver) and give the pod only their paths:
``OPENAI_API_KEY_FILE=/var/run/secrets/agentswarm/env/OPENAI_API_KEY``. Handlers and SDKs read the plain
``OPENAI_API_KEY``, so at start the runtime reads each listed file into the variable it names.

Only the names listed in ``AGENTSWARM_SECRET_ENV_FILES`` (comma-separated) are resolved: an unrelated
``*_FILE`` variable of the image (``PIP_CONFIG_FILE``, ``GOOGLE_APPLICATION_CREDENTIALS``-style paths) is
never read into the environment by accident. A listed name whose file is missing or unreadable stops the
process with one line naming the variable and the path, never the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

__all__ = ["LIST_VARIABLE", "SecretEnvError", "resolve_secret_env_files"]

LIST_VARIABLE = "AGENTSWARM_SECRET_ENV_FILES"
"""Comma-separated names ``NAME`` whose value is read from the file at ``$NAME_FILE``."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretEnvError(ValueError):
    """A listed secret variable cannot be resolved; the message names it and never shows a value."""


def resolve_secret_env_files(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set ``NAME`` from the file ``$NAME_FILE`` for every name in ``$AGENTSWARM_SECRET_ENV_FILES``.

    One trailing newline is stripped (``echo`` and editors add one; keys never end with one). A name that is
    also set directly is refused: two sources for one secret hide which one is in use. Returns the names set.
    """
    env = os.environ if environ is None else environ
    listed = [n.strip() for n in env.get(LIST_VARIABLE, "").split(",") if n.strip()]
    problems: list[str] = []
    values: dict[str, str] = {}
    for name in listed:
        file_var = f"{name}_FILE"
        if not _NAME.match(name):
            problems.append(f"{LIST_VARIABLE}: {name!r} is not a variable name (letters, digits, '_')")
            continue
        path = env.get(file_var)
        if not path:
            problems.append(f"{name}: listed in {LIST_VARIABLE} but {file_var} is not set")
            continue
        if name in env:
            problems.append(f"{name}: set both directly and through {file_var}={path}; keep one")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read()
        except OSError as exc:
            problems.append(f"{file_var}={path}: cannot read ({exc.strerror or exc})")
            continue
        except UnicodeDecodeError:
            problems.append(f"{file_var}={path}: not UTF-8 text")
            continue
        values[name] = value.removesuffix("\n").removesuffix("\r")
    if problems:
        raise SecretEnvError("cannot resolve secret files:\n  " + "\n  ".join(problems))
    env.update(values)
    return list(values)
