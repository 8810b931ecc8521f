"""Benchmark 4: idle websocket connections held by one coordinator process, and memory per connection.

The server under test runs in its own process pinned to one CPU (``sched_setaffinity``), with RLIMIT_NOFILE
raised to the hard limit: either the real coordinator (``agentswarm.coordinator.Coordinator`` on a Redis
broker, token auth, its default 20 s pings) or a bare ``websockets`` server whose handler only waits for the
connection to close. Several client processes (pinned to the other CPUs) open the connections with the bearer
token and hold them idle. Memory per connection = (server RSS with N connections - RSS before) / N, and the
server's CPU time over a quiet window while holding them is reported too. A second figure is taken after the
server ran ``gc.collect()`` + glibc ``malloc_trim(0)`` (on SIGUSR1): live memory without the allocator
fragmentation the handshakes leave behind.

    python -m bench.wscap serve {coordinator|bare|coordinator-nodeflate} PORT REDIS_URL

``coordinator-nodeflate`` is an experiment (see bench/FINDINGS.md): the coordinator with permessage-deflate
off, to show where the memory per connection goes.
    python -m bench.wscap clients URL TOKEN COUNT
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, RedisServer, Summary, free_port, wait_for_port

log = logging.getLogger("bench.wscap")
TOKEN = "bench-token-0123456789"


def _raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------------------------- server side
def _trim() -> None:
    """SIGUSR1: collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so the
    orchestrator can tell live memory from allocator fragmentation left by the handshakes."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _serve(kind: str, port: int, redis_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _trim)
    if kind.startswith("coordinator"):
        from agentswarm.broker.redis_streams import RedisStreamsBroker
        from agentswarm.coordinator import Coordinator, ServerOptions

        broker = RedisStreamsBroker(redis_url, namespace="wscap")
        await broker.connect()
        if kind == "coordinator-nodeflate":
            # Experiment for bench/FINDINGS.md, not the product: the same coordinator with permessage-deflate
            # switched off (websockets keeps a zlib compressor + decompressor per connection otherwise).
            import functools

            import agentswarm.coordinator.server as server_module

            server_module.serve = functools.partial(server_module.serve, compression=None)
        coordinator = Coordinator(broker, ServerOptions(api_token=TOKEN, host="127.0.0.1", port=port))
        await coordinator.start()
        print("READY", flush=True)
        await stop.wait()
        await coordinator.shutdown(drain_seconds=0)
        await broker.close()
    else:
        from websockets.asyncio.server import ServerConnection, serve

        async def handler(connection: ServerConnection) -> None:
            await connection.wait_closed()

        async with serve(handler, "127.0.0.1", port):
            print("READY", flush=True)
            await stop.wait()


# ---------------------------------------------------------------------------------------------- client side
async def _clients(url: str, token: str, count: int) -> None:
    from websockets.asyncio.client import connect

    conns: list[Any] = []
    failures = 0
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        nonlocal failures
        async with sem:
            for _ in range(3):
                try:
                    conns.append(
                        await connect(
                            url,
                            additional_headers={"Authorization": f"Bearer {token}"},
                            ping_interval=None,
                            open_timeout=30,
                        )
                    )
                    return
                except Exception:
                    await asyncio.sleep(0.2)
            failures += 1

    await asyncio.gather(*(one() for _ in range(count)))
    print(f"OPEN {len(conns)} {failures}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for c in conns:
        c.transport.abort()


# ---------------------------------------------------------------------------------------------- orchestrator
def _spawn(args: list[str], cpus: set[int]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.wscap", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, cpus)
    return proc


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line within ``timeout`` (the child prints READY / OPEN lines)."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise TimeoutError(f"no output from {proc.args!r} within {timeout}s")
    return proc.stdout.readline().strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _one_run(
    kind: str, redis: RedisServer, connections: int, client_procs: int, timeout: float
) -> dict[str, Any]:
    import psutil

    ncpu = os.cpu_count() or 1
    server_cpu = {0}
    client_cpus = set(range(1, ncpu)) or {0}
    port = free_port()
    server = _spawn(["serve", kind, str(port), redis.url], server_cpu)
    clients: list[subprocess.Popen[str]] = []
    try:
        if _readline(server, 30) != "READY":
            raise RuntimeError(f"{kind} server did not start")
        wait_for_port(port)
        ps = psutil.Process(server.pid)
        time.sleep(0.5)
        before = ps.memory_info().rss
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(0.3)
        before_trim = ps.memory_info().rss
        per = [
            connections // client_procs + (1 if i < connections % client_procs else 0)
            for i in range(client_procs)
        ]
        t0 = time.monotonic()
        clients = [_spawn(["clients", f"ws://127.0.0.1:{port}/ws", TOKEN, str(n)], client_cpus) for n in per]
        opened = failed = 0
        for c in clients:
            remaining = max(1.0, timeout - (time.monotonic() - t0))
            parts = _readline(c, remaining).split()
            opened += int(parts[1])
            failed += int(parts[2])
        connect_s = time.monotonic() - t0
        time.sleep(2.0)  # let the server settle (welcome frames sent, buffers released)
        held = sum(
            1
            for c in ps.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
        after = ps.memory_info().rss
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(0.5)
        after_trim = ps.memory_info().rss
        cpu0 = sum(ps.cpu_times()[:2])
        time.sleep(3.0)
        idle_cpu = (sum(ps.cpu_times()[:2]) - cpu0) / 3.0
        return {
            "connections_requested": connections,
            "connections_opened": opened,
            "connections_failed": failed,
            "connections_held": held,
            "connect_seconds": connect_s,
            "rss_before_mib": before / 2**20,
            "rss_after_mib": after / 2**20,
            "kib_per_connection": (after - before) / 1024 / max(1, held),
            "kib_per_connection_trimmed": (after_trim - before_trim) / 1024 / max(1, held),
            "idle_cpu_fraction": idle_cpu,
        }
    finally:
        for c in clients:
            _stop(c)
        _stop(server)


KINDS = ("coordinator", "bare", "coordinator-nodeflate")


def run_wscap(
    workdir: Path,
    connections: int,
    repeats: int,
    client_procs: int = 4,
    timeout: float = 180,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, Any]:
    nofile = _raise_nofile()
    out: dict[str, Any] = {"rlimit_nofile": nofile, "connections": connections, "servers": {}, "errors": []}
    with RedisServer(workdir / "redis-ws") as redis:
        assert isinstance(redis, RedisServer)
        for kind in kinds:
            runs = []
            for k in range(1 if kind == "coordinator-nodeflate" else repeats):  # the experiment: once
                try:
                    runs.append(_one_run(kind, redis, connections, client_procs, timeout))
                    log.info("wscap %s run %d: %s", kind, k, runs[-1])
                except Exception as exc:
                    log.exception("wscap %s run %d failed", kind, k)
                    out["errors"].append(f"{kind} run {k}: {type(exc).__name__}: {exc}")
            out["servers"][kind] = {
                "runs": runs,
                "held": Summary.of([r["connections_held"] for r in runs]).as_dict(),
                "kib_per_connection": Summary.of([r["kib_per_connection"] for r in runs]).as_dict(),
                "kib_per_connection_trimmed": Summary.of(
                    [r["kib_per_connection_trimmed"] for r in runs]
                ).as_dict(),
                "connect_seconds": Summary.of([r["connect_seconds"] for r in runs]).as_dict(),
                "idle_cpu_fraction": Summary.of([r["idle_cpu_fraction"] for r in runs]).as_dict(),
            }
    return out


def main(argv: list[str]) -> int:
    _raise_nofile()
    if argv[0] == "serve":
        logging.basicConfig(level=logging.WARNING)
        asyncio.run(_serve(argv[1], int(argv[2]), argv[3]))
    elif argv[0] == "clients":
        asyncio.run(_clients(argv[1], argv[2], int(argv[3])))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
