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

The servers are :class:`agentswarm.servers.RedisServer` and :class:`~agentswarm.servers.NatsServer` (the
same flags ``agentswarm local`` uses): ``start()``, ``stop()`` (SIGTERM, then SIGKILL), ``kill()``
(SIGKILL), ``restart()``, ``url``, ``port``, ``pid``.
"""

from __future__ import annotations

import faulthandler
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from agentswarm.servers import NatsServer, RedisServer, ServerProcess

S = TypeVar("S", bound=ServerProcess)

__all__ = ["NatsServer", "RedisServer"]


#: Seconds a test may run past its own pytest-timeout before the whole run stops with every thread's
#: stack. pytest-timeout's signal cannot end a hang in cleanup that runs after its timer (an event loop
#: closing over a task that never finishes): this watchdog ends the run instead of letting it hang.
WATCHDOG_GRACE_SECONDS = 120


def _real_stderr(config: pytest.Config) -> int:
    """The run's own stderr, not the test's captured one (so the stacks reach the CI log)."""
    capturing = getattr(config.pluginmanager.getplugin("capturemanager"), "_global_capturing", None)
    fd = getattr(getattr(capturing, "err", None), "targetfd_save", None)
    return fd if isinstance(fd, int) else sys.__stderr__.fileno()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 300)
    stderr = _real_stderr(item.config)
    faulthandler.dump_traceback_later(limit + WATCHDOG_GRACE_SECONDS, exit=True, file=stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis-session")) as server:
        yield server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats-session")) as server:
        yield server


def _private_servers(cls: type[S], workdir: Path, prefix: str) -> Iterator[Callable[[], S]]:
    """Yield a maker of fresh started servers of ``cls``, each in its own directory; stop them all after."""
    started: list[S] = []

    def make() -> S:
        server = cls(workdir / f"{prefix}-{len(started)}")
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    yield from _private_servers(RedisServer, tmp_path, "redis")


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[Callable[[], NatsServer]]:
    yield from _private_servers(NatsServer, tmp_path, "nats")


@pytest.fixture
def unique_namespace() -> str:
    """A namespace (stream/key prefix) nobody else uses on the shared session servers."""
    return "t" + uuid.uuid4().hex[:12]


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
