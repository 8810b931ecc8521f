"""``agentswarm local``: the whole swarm as supervised local processes, no cluster.

Layout of the state directory (default ``./.agentswarm``)::

    token            the API token (generated once, mode 0600)
    local.json       where the coordinator listens, the token, and the PIDs of every child
    nats/ redis/     the embedded broker's data (JetStream file store / Redis AOF)
    agents/agent-N/  each agent's checkpoint directory (its "PVC")
    logs/*.log       each child's stdout and stderr
    demo.json        the ids of the last demo batch (a second --demo run resumes it)
    lock             held while a supervisor runs, so two cannot share one state dir

Why processes and not tasks in one event loop: a local swarm must behave like the cluster, where an
agent can die at any moment (SIGKILL) and come back under the same identity to resume from its
checkpoint. Every child gets its own process group, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops agents first (they checkpoint), the coordinator next and the broker
last, and finally SIGKILLs any group that is still alive. Children also get ``PR_SET_PDEATHSIG`` so
that even a SIGKILLed supervisor leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from agentswarm.servers import (
    ServerNotFound,
    free_port,
    nats_server_argv,
    port_is_free,
    redis_server_argv,
)

#: Environment variables the supervisor sets for its children; a user's own AGENTSWARM_* pass through.
_CHILD_ENV_KEYS = (
    "AGENTSWARM_BROKER",
    "AGENTSWARM_REDIS_URL",
    "AGENTSWARM_NATS_URL",
    "AGENTSWARM_API_TOKEN",
    "AGENTSWARM_PORT",
    "AGENTSWARM_HOST",
    "AGENTSWARM_AGENT_ID",
    "AGENTSWARM_CHECKPOINT_DIR",
    "AGENTSWARM_HANDLER",
    "AGENTSWARM_SHUTDOWN_DRAIN_SECONDS",
)

DEMO_HANDLER = "agentswarm.handlers.steps:handle"


class LocalError(RuntimeError):
    """Set-up failed in a way the user can fix (port busy, redis-server missing, state dir locked)."""


@dataclass
class LocalOptions:
    agents: int = 3
    broker: str = "nats"
    redis_url: str | None = None
    handler: str | None = None
    state_dir: Path = Path(".agentswarm")
    port: int = 8080
    host: str = "127.0.0.1"
    token: str | None = None
    demo: bool = False
    demo_tasks: int = 12
    demo_steps: int = 8
    demo_delay: float = 0.5
    #: Seconds the supervisor waits for a child to exit after SIGTERM before SIGKILLing its group.
    stop_timeout: float = 15.0
    out: TextIO = field(default_factory=lambda: sys.stdout)


# --- helpers -----------------------------------------------------------------------------------------


#: Exec trampoline: ask the kernel to SIGTERM the child when the supervisor dies (Linux
#: ``PR_SET_PDEATHSIG``, kept across exec), bail out if the supervisor is already gone, then exec the
#: real command. Done in a fresh interpreter rather than in ``preexec_fn``, which is unsafe once the
#: supervisor has threads (asyncio's resolver, httpx).
_TRAMPOLINE = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class Child:
    """One supervised process: restartable, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.restart_delay = 0.5
        self.next_start = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *self.argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a terminal Ctrl-C reaches only the supervisor
                close_fds=True,
            )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL the group; always reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a pid
                await asyncio.sleep(0.05)
        # Anything left in the group (the child's own children) goes too.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


# --- the supervisor ----------------------------------------------------------------------------------


class LocalSwarm:
    """Starts, supervises and stops the broker, the coordinator and the agents."""

    def __init__(self, opts: LocalOptions) -> None:
        if opts.agents < 1:
            raise LocalError(f"--agents must be at least 1, got {opts.agents}")
        if opts.broker not in ("nats", "redis"):
            raise LocalError(f"--broker must be 'nats' or 'redis', got {opts.broker!r}")
        if opts.redis_url and opts.broker != "redis":
            raise LocalError("--redis-url needs --broker redis")
        self.opts = opts
        self.state = opts.state_dir.resolve()
        self.broker_child: Child | None = None
        self.coordinator: Child | None = None
        self.agents: list[Child] = []
        self.broker_env: dict[str, str] = {}
        self.token = ""
        self.port = 0
        self.url = ""
        self._lock_fd: int | None = None
        self._stopping = False

    # -- output --
    def say(self, text: str) -> None:
        print(text, file=self.opts.out, flush=True)

    # -- set-up --
    def _lock_state_dir(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LocalError(
                f"another `agentswarm local` is running on {self.state}; stop it or use --state-dir"
            ) from None
        self._lock_fd = fd

    def _token(self) -> str:
        if self.opts.token:
            return self.opts.token
        from_env = os.environ.get("AGENTSWARM_API_TOKEN")
        if from_env:
            return from_env
        path = self.state / "token"
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return token

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_KEYS}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.broker_env)
        return env

    def _python(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "agentswarm.cli", *args]

    async def _start_broker(self) -> None:
        opts = self.opts
        logs = self.state / "logs"
        if opts.broker == "redis" and opts.redis_url:
            self.broker_env = {"AGENTSWARM_BROKER": "redis", "AGENTSWARM_REDIS_URL": opts.redis_url}
            return
        if opts.broker == "redis":
            port = free_port()
            data = self.state / "redis"
            data.mkdir(parents=True, exist_ok=True)
            try:
                argv = redis_server_argv(port, data, appendfsync="everysec")
            except ServerNotFound as exc:
                raise LocalError(
                    f"{exc}, pass --redis-url, or use the default embedded NATS broker (--broker nats)"
                ) from None
            self.broker_child = Child("redis-server", argv, dict(os.environ), logs / "redis.log")
            self.broker_env = {
                "AGENTSWARM_BROKER": "redis",
                "AGENTSWARM_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            }
            self.broker_child.start()
            await self._wait_redis(port)
            return
        port, monitor = free_port(), free_port()
        data = self.state / "nats"
        data.mkdir(parents=True, exist_ok=True)
        try:
            argv = nats_server_argv(port, data, monitor_port=monitor, server_name="agentswarm-local")
        except ServerNotFound as exc:
            raise LocalError(str(exc)) from None
        self.broker_child = Child("nats-server", argv, dict(os.environ), logs / "nats.log")
        self.broker_env = {"AGENTSWARM_BROKER": "nats", "AGENTSWARM_NATS_URL": f"nats://127.0.0.1:{port}"}
        self.broker_child.start()
        await self._wait_http(
            f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true", self.broker_child, "nats-server"
        )

    async def _wait_redis(self, port: int, within: float = 30.0) -> None:
        import redis.asyncio as aioredis

        deadline = time.monotonic() + within
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            while time.monotonic() < deadline:
                self._check_alive(self.broker_child, "redis-server")
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        raise LocalError(f"redis-server did not answer on port {port} within {within:.0f}s")

    def _check_alive(self, child: Child | None, what: str) -> None:
        if child is not None and not child.alive():
            raise LocalError(f"{what} exited during start-up; see {child.log_path}")

    async def _wait_http(self, url: str, child: Child | None, what: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                self._check_alive(child, what)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise LocalError(f"{what} not ready at {url} within {within:.0f}s; see its log in {self.state}/logs")

    def _pick_port(self) -> int:
        port = self.opts.port
        if port and port_is_free(self.opts.host, port):
            return port
        chosen = free_port(self.opts.host)
        if port:
            self.say(f"port {port} is busy; the coordinator uses port {chosen} instead")
        return chosen

    def _start_coordinator(self) -> None:
        env = self._base_env()
        env.update(
            AGENTSWARM_API_TOKEN=self.token,
            AGENTSWARM_PORT=str(self.port),
            AGENTSWARM_HOST=self.opts.host,
            AGENTSWARM_SHUTDOWN_DRAIN_SECONDS="0",
        )
        self.coordinator = Child(
            "coordinator", self._python("coordinator"), env, self.state / "logs" / "coordinator.log"
        )
        self.coordinator.start()

    def _agent_child(self, index: int) -> Child:
        name = f"agent-{index}"
        checkpoint_dir = self.state / "agents" / name
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        env = self._base_env()
        env.update(AGENTSWARM_AGENT_ID=name, AGENTSWARM_CHECKPOINT_DIR=str(checkpoint_dir))
        if self.opts.handler:
            env["AGENTSWARM_HANDLER"] = self.opts.handler
        return Child(name, self._python("agent"), env, self.state / "logs" / f"{name}.log")

    def write_manifest(self) -> None:
        """``local.json``: how to reach the swarm and which PIDs belong to it (tools and tests read it)."""
        children = [c for c in (self.broker_child, self.coordinator, *self.agents) if c is not None]
        manifest = {
            "url": self.url,
            "token": self.token,
            "broker": self.opts.broker,
            "broker_env": self.broker_env,
            "supervisor_pid": os.getpid(),
            "pids": {c.name: c.pid for c in children},
            "restarts": {c.name: c.restarts for c in children},
            "state_dir": str(self.state),
        }
        tmp = self.state / "local.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        os.replace(tmp, self.state / "local.json")

    async def start(self) -> None:
        self._lock_state_dir()
        self.token = self._token()
        await self._start_broker()
        self.port = self._pick_port()
        host = "127.0.0.1" if self.opts.host in ("0.0.0.0", "") else self.opts.host
        self.url = f"ws://{host}:{self.port}/ws"
        self._start_coordinator()
        self.agents = [self._agent_child(i) for i in range(self.opts.agents)]
        for agent in self.agents:
            agent.start()
        self.write_manifest()
        await self._wait_http(f"http://{host}:{self.port}/readyz", self.coordinator, "coordinator")
        self.say(
            f"agentswarm local: {self.opts.agents} agent(s), {self.opts.broker} broker, state in {self.state}"
        )
        self.say(f"  coordinator  {self.url}")
        self.say(f"  token        {self.token}")
        self.say(f"  metrics      http://{host}:{self.port}/metrics")
        self.say(f"  logs         {self.state / 'logs'}")
        self.say(f"  try: AGENTSWARM_URL={self.url} AGENTSWARM_API_TOKEN={self.token} \\")
        self.say("         agentswarm submit --payload '{\"steps\": 5}'")

    # -- supervision --
    async def supervise(self) -> None:
        """Restart any child that exits, under the same identity, with backoff if it keeps dying."""
        children = [c for c in (self.broker_child, self.coordinator, *self.agents) if c is not None]
        while not self._stopping:
            changed = False
            now = time.monotonic()
            for child in children:
                if self._stopping:
                    break
                if child.proc is None or child.alive():
                    continue
                if child.next_start == 0.0:
                    code = child.proc.returncode
                    lived = now - child.started_at
                    # Crash loops back off (up to 30 s); a child that ran a while restarts at once.
                    child.restart_delay = 0.5 if lived > 10 else min(30.0, child.restart_delay * 2)
                    child.next_start = now + child.restart_delay
                    how = _describe_exit(code)
                    self.say(f"{child.name} exited ({how}); restarting in {child.restart_delay:.1f}s")
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.restarts += 1
                    child.start()
                    changed = True
            if changed:
                self.write_manifest()
            await asyncio.sleep(0.2)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def kill_all(self) -> None:
        """SIGKILL every child's process group (second Ctrl-C)."""
        for child in (*self.agents, self.coordinator, self.broker_child):
            if child is not None:
                child.signal_group(signal.SIGKILL)

    async def stop(self) -> None:
        """Agents first (they checkpoint and leave their task unacknowledged), then coordinator, broker."""
        self._stopping = True
        timeout = self.opts.stop_timeout
        await asyncio.gather(*(a.stop(timeout) for a in self.agents))
        if self.coordinator is not None:
            await self.coordinator.stop(timeout)
        if self.broker_child is not None:
            await self.broker_child.stop(timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- demo --
    async def demo(self) -> int:
        from agentswarm.client import ProgressBar, SwarmClient, summary_table

        path = self.state / "demo.json"
        client = SwarmClient(self.url, self.token)
        previous: list[str] = []
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                previous = [str(t) for t in json.loads(path.read_text(encoding="utf-8")).get("task_ids", [])]
        ids: list[str] = []
        if previous:
            # A first pass without waiting tells finished from unfinished tasks of the earlier run.
            unfinished = await self._unfinished(previous)
            if unfinished:
                self.say(f"resuming {len(unfinished)} unfinished demo task(s) of the previous run")
                ids = previous
        if not ids:
            batch = secrets.token_hex(3)
            specs = [
                {
                    "task_id": f"demo-{batch}-{i:03d}",
                    "payload": {"steps": self.opts.demo_steps, "delay": self.opts.demo_delay},
                }
                for i in range(self.opts.demo_tasks)
            ]
            ids = await client.submit(specs)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"task_ids": ids}), encoding="utf-8")
            os.replace(tmp, path)
            self.say(f"submitted {len(ids)} demo task(s) of {self.opts.demo_steps} steps each")
        bar = ProgressBar(ids, stream=self.opts.out)
        client.on_reconnect = bar.on_reconnect
        bar.render(force=True)
        bar.start_ticker()
        try:
            watches = await client.watch(ids, on_event=bar.on_event, on_result=bar.on_result)
        finally:
            bar.close()
        self.say(summary_table(watches))
        done = sum(1 for w in watches.values() if w.result is not None and w.result.status == "done")
        dead = len(watches) - done
        self.say(f"demo finished: {done} done, {dead} dead-lettered")
        return 0 if dead == 0 else 1

    async def _unfinished(self, task_ids: list[str]) -> list[str]:
        """Ids among ``task_ids`` without a result yet, asked of the broker directly."""
        from agentswarm.broker import open_broker
        from agentswarm.settings import load_settings

        overrides: dict[str, Any] = {"broker": self.opts.broker}
        if "AGENTSWARM_REDIS_URL" in self.broker_env:
            overrides["redis_url"] = self.broker_env["AGENTSWARM_REDIS_URL"]
        if "AGENTSWARM_NATS_URL" in self.broker_env:
            overrides["nats_url"] = self.broker_env["AGENTSWARM_NATS_URL"]
        broker = await open_broker(load_settings(**overrides))
        try:
            unfinished = []
            for tid in task_ids:
                if await broker.get_result(tid) is None:
                    unfinished.append(tid)
            return unfinished
        finally:
            await broker.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


async def _main(opts: LocalOptions) -> int:
    swarm = LocalSwarm(opts)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        if swarm.stopping:
            # A second Ctrl-C while stopping: do not wait for graceful exits any more.
            swarm.say("second signal: killing all children now")
            swarm.kill_all()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    supervisor: asyncio.Task[None] | None = None
    work: asyncio.Task[int] | None = None
    waiter = asyncio.create_task(stop.wait())
    code = 0
    try:
        started = asyncio.create_task(swarm.start())
        await asyncio.wait({started, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)
            return 130
        started.result()  # raises LocalError from set-up
        supervisor = asyncio.create_task(swarm.supervise())
        if opts.demo:
            work = asyncio.create_task(swarm.demo())
            await asyncio.wait({work, waiter, supervisor}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                code = work.result()
            else:
                code = 130
        else:
            swarm.say("running; press Ctrl-C to stop")
            await asyncio.wait({waiter, supervisor}, return_when=asyncio.FIRST_COMPLETED)
            code = 0  # stopping on Ctrl-C/SIGTERM is the normal way out
        if supervisor.done() and not supervisor.cancelled():
            supervisor.result()
        return code
    finally:
        for task in (work, supervisor, waiter):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        swarm.say("stopping agents, coordinator and broker ...")
        await swarm.stop()
        swarm.say("stopped")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_local(opts: LocalOptions) -> int:
    """Entry point of ``agentswarm local``; returns the process exit code."""
    from agentswarm.client import ClientError
    from agentswarm.handlers import HandlerLoadError, load_handler
    from agentswarm.settings import SettingsError, load_settings

    try:
        # The children read the same AGENTSWARM_* variables: fail here, once and clearly, rather than
        # in a crash-looping agent.
        settings = load_settings(**({"handler": opts.handler} if opts.handler else {}))
        # Children run ``python -m``, which puts the working directory first on sys.path; do the same.
        sys.path.insert(0, os.getcwd())
        try:
            load_handler(settings.handler)
        finally:
            sys.path.remove(os.getcwd())
        return asyncio.run(_main(opts))
    except (LocalError, SettingsError, HandlerLoadError) as exc:
        print(f"agentswarm local: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # the demo could not talk to its own coordinator
        print(f"agentswarm local: demo failed: {exc}", file=sys.stderr)
        return 1
