"""Clients verify the coordinator's certificate: a real TLS endpoint (nginx terminating TLS with a server
certificate signed by a CA this test creates, as the GKE load balancer does in front of the coordinator).

With the CA bundle the websocket API works over ``wss://``; without it (the system store does not know the
test CA) the client refuses at once, the CLI says why, and nothing is retried or sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentswarm.client import CertificateError, ClientError, SwarmClient

from .helpers import TOKEN, Nginx, Pki, Swarm


@pytest.fixture
def tls_nginx(redis_swarm: Swarm, tmp_path: Path) -> Iterator[tuple[Nginx, Pki]]:
    redis_swarm.start_coordinator()
    pki = Pki.create(tmp_path / "pki")
    nginx = Nginx(tmp_path / "nginx", redis_swarm.port, read_timeout_s=30, tls=pki).start()
    yield nginx, pki
    nginx.stop()


async def test_wss_verifies_with_the_ca_bundle_and_refuses_without(tls_nginx: tuple[Nginx, Pki]) -> None:
    nginx, pki = tls_nginx
    url = f"wss://127.0.0.1:{nginx.port}/ws"
    trusted = SwarmClient(url, TOKEN, ca_file=pki.ca_cert, max_retries=0)
    (task_id,) = await trusted.submit([{"payload": {"steps": 1}}])
    assert task_id
    assert isinstance(await trusted.stats(), dict)
    assert trusted.connections == 2 and trusted.reconnects == 0

    untrusted = SwarmClient(url, TOKEN, max_retries=None)  # would retry forever if it retried at all
    with pytest.raises(CertificateError, match="did not verify"):
        await untrusted.stats()
    assert untrusted.connections == 0 and untrusted.reconnects == 0


async def test_wss_checks_the_hostname(redis_swarm: Swarm, tmp_path: Path) -> None:
    """A certificate from the trusted CA, but for another name, is refused too."""
    redis_swarm.start_coordinator()
    pki = Pki.create(tmp_path / "pki", hosts=("swarm.example.com",))
    nginx = Nginx(tmp_path / "nginx", redis_swarm.port, read_timeout_s=30, tls=pki).start()
    try:
        client = SwarmClient(f"wss://127.0.0.1:{nginx.port}/ws", TOKEN, ca_file=pki.ca_cert)
        with pytest.raises(CertificateError, match="mismatch"):
            await client.stats()
    finally:
        nginx.stop()


def test_a_ca_file_with_a_plain_url_is_refused() -> None:
    with pytest.raises(ClientError, match="needs a wss:// URL"):
        SwarmClient("ws://127.0.0.1:1/ws", TOKEN, ca_file="/nonexistent.pem")
    with pytest.raises(ClientError, match="cannot read the CA file"):
        SwarmClient("wss://127.0.0.1:1/ws", TOKEN, ca_file="/nonexistent.pem")


def test_cli_submit_over_wss(tls_nginx: tuple[Nginx, Pki]) -> None:
    nginx, pki = tls_nginx
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env["AGENTSWARM_API_TOKEN"] = TOKEN
    cli = [sys.executable, "-m", "agentswarm.cli", "submit", "--url", f"wss://127.0.0.1:{nginx.port}/ws"]
    args = ["--payload", '{"steps": 1}', "--max-retries", "0", "--no-watch"]
    ok = subprocess.run(
        [*cli, "--ca-file", str(pki.ca_cert), *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.split()) == 1
    refused = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0
    assert "did not verify" in refused.stderr and "--ca-file" in refused.stderr
    assert "Traceback" not in refused.stderr
    by_env = subprocess.run(
        [*cli, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "AGENTSWARM_CA_FILE": str(pki.ca_cert)},
    )
    assert by_env.returncode == 0, by_env.stderr
