"""API token rotation without downtime, on a real coordinator process reading a token file.

The file stands for a mounted Secret: Kubernetes swaps a ``..data`` symlink when the Secret changes, so
the test replaces the file the same way (a new file renamed over the old one) while the coordinator runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from agentswarm.client import AuthError, SwarmClient

from .helpers import Swarm

CURRENT = "current-token-0123456789abcdef"
NEXT = "next-token-0123456789abcdef"


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic, like the kubelet's symlink swap


async def _works(swarm: Swarm, token: str) -> bool:
    try:
        await SwarmClient(swarm.url, token, max_retries=0).stats()
    except AuthError:
        return False
    return True


async def test_tokens_rotate_without_restart(redis_swarm: Swarm, tmp_path: Path) -> None:
    token_file = tmp_path / "api-token" / "token"
    token_file.parent.mkdir()
    token_file.write_text(f"{CURRENT}\n")
    coordinator = redis_swarm.start_coordinator(
        AGENTSWARM_API_TOKEN="", AGENTSWARM_API_TOKEN_FILE=str(token_file)
    )
    pid = coordinator.pid
    assert await _works(redis_swarm, CURRENT)
    assert not await _works(redis_swarm, NEXT)

    _replace(token_file, f"{CURRENT}\n{NEXT}\n")  # 1. both valid: move the clients over
    assert await _works(redis_swarm, CURRENT) and await _works(redis_swarm, NEXT)

    _replace(token_file, f"{NEXT}\n")  # 2. retire the old token
    assert await _works(redis_swarm, NEXT)
    assert not await _works(redis_swarm, CURRENT)

    _replace(token_file, "\n")  # 3. a broken update locks nobody out: the last good set stays
    assert await _works(redis_swarm, NEXT)
    assert "holds no token; keeping the last good tokens" in coordinator.log()
    assert coordinator.pid == pid  # one process throughout: no restart


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_coordinator_refuses_to_start_without_a_token_in_the_file(
    redis_swarm: Swarm, tmp_path: Path, content: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    with pytest.raises(RuntimeError, match="holds no token"):
        redis_swarm.start_coordinator(AGENTSWARM_API_TOKEN="", AGENTSWARM_API_TOKEN_FILE=str(token_file))
