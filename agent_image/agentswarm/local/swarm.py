"""One local swarm: the state directory (lock, token, manifest) and the broker, coordinator and agents
started as supervised children, each told its settings as typed overrides."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
from typing import Any

import httpx

from agentswarm.broker import Broker, open_broker
from agentswarm.local.autoscale import Autoscaler
from agentswarm.local.broker import LocalBroker, start_broker
from agentswarm.local.options import LocalError, LocalOptions
from agentswarm.local.supervisor import Supervisor
from agentswarm.process import ChildProcess
from agentswarm.servers import free_port, port_is_free
from agentswarm.settings import Settings, env_name, to_env

#: Agent settings local mode changes when autoscaling, unless the user set them: a scaled-in agent's task is
#: resumed by another agent, so its checkpoints live in the broker, and it is taken over after 10 s.
AUTOSCALE_AGENT_SETTINGS: dict[str, Any] = {"checkpoint_backend": "broker", "claim_idle_ms": 10_000}

#: Settings the supervisor decides for its children; the user's own values of these do not pass through
#: (every other ``AGENTSWARM_*`` variable does).
_OWNED_SETTINGS = (
    "broker",
    "redis_url",
    "nats_url",
    "api_token",
    "port",
    "host",
    "agent_id",
    "checkpoint_dir",
    "handler",
    "shutdown_drain_seconds",
)


class LocalSwarm:
    """Starts, supervises and stops the broker, the coordinator and the agents of one state directory.

    ``settings`` are the supervisor's own, read from the environment and validated once up front.
    """

    def __init__(self, opts: LocalOptions, settings: Settings) -> None:
        opts.check()
        self.opts = opts
        self.settings = settings
        self.state = opts.state_dir.resolve()
        self.broker: LocalBroker | None = None
        self.coordinator: ChildProcess | None = None
        self.agents: list[ChildProcess] = []
        self.supervisor: Supervisor | None = None
        self.autoscaler: Autoscaler | None = None
        self._scaler_broker: Broker | None = None
        #: Agents stopped on purpose (scaled in), which the supervisor must not restart.
        self._paused: set[str] = set()
        self.token = ""
        self.port = 0
        self.url = ""
        #: The dashboard page (served by the coordinator); asks for :attr:`token`, never carries it.
        self.dashboard_url = ""
        self._lock_fd: int | None = None
        self._stopping = False

    @property
    def children(self) -> list[ChildProcess]:
        """Every child in start order: broker, coordinator, agents."""
        server = self.broker.server if self.broker is not None else None
        return [c for c in (server, self.coordinator, *self.agents) if c is not None]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def say(self, text: str) -> None:
        print(text, file=self.opts.out, flush=True)

    # -- set-up -------------------------------------------------------------------------------------------
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
        """``--token``, else ``AGENTSWARM_API_TOKEN``, else the one kept in the state dir (made once)."""
        if self.opts.token:
            return self.opts.token
        if self.settings.api_token is not None and self.settings.api_token.get_secret_value():
            return self.settings.api_token.get_secret_value()
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

    def _pick_port(self) -> int:
        port = self.opts.port
        if port and port_is_free(self.opts.host, port):
            return port
        chosen = free_port(self.opts.host)
        if port:
            self.say(f"port {port} is busy; the coordinator uses port {chosen} instead")
        return chosen

    def _child(self, name: str, role: str, **overrides: Any) -> ChildProcess:
        """``agentswarm <role>`` with the user's environment, the broker's settings and ``overrides``."""
        assert self.broker is not None
        owned = {env_name(field) for field in _OWNED_SETTINGS}
        env = {k: v for k, v in os.environ.items() if k not in owned}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(to_env({**self.broker.overrides, **overrides}))
        argv = [sys.executable, "-m", "agentswarm.cli", role]
        return ChildProcess(
            name, argv, env=env, log_path=self.state / "logs" / f"{name}.log", die_with_parent=True
        )

    def _agent(self, index: int) -> ChildProcess:
        name = f"agent-{index}"
        checkpoint_dir = self.state / "agents" / name
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        if self.opts.autoscale is not None:
            extra = {k: v for k, v in AUTOSCALE_AGENT_SETTINGS.items() if env_name(k) not in os.environ}
        return self._child(
            name,
            "agent",
            agent_id=name,
            checkpoint_dir=checkpoint_dir,
            handler=self.settings.handler,
            **extra,
        )

    def write_manifest(self) -> None:
        """``local.json``: how to reach the swarm and which PIDs belong to it (tools and tests read it)."""
        manifest = {
            "url": self.url,
            "token": self.token,
            "broker": self.opts.broker,
            "broker_env": to_env(self.broker.overrides) if self.broker is not None else {},
            "supervisor_pid": os.getpid(),
            "pids": {c.name: c.pid for c in self.children},
            "restarts": {c.name: c.restarts for c in self.children},
            "state_dir": str(self.state),
        }
        tmp = self.state / "local.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        os.replace(tmp, self.state / "local.json")

    async def _wait_coordinator(self, url: str, within: float = 60.0) -> None:
        coordinator = self.coordinator
        assert coordinator is not None
        deadline = asyncio.get_running_loop().time() + within
        async with httpx.AsyncClient(timeout=2.0) as http:
            while asyncio.get_running_loop().time() < deadline:
                if not coordinator.running:
                    raise LocalError(f"coordinator exited during start-up; see {coordinator.log_path}")
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise LocalError(f"coordinator not ready at {url} within {within:.0f}s; see {coordinator.log_path}")

    async def start(self) -> None:
        self._lock_state_dir()
        self.token = self._token()
        self.broker = start_broker(self.opts, self.state)
        await self.broker.wait_ready(self.settings)
        self.port = self._pick_port()
        host = "127.0.0.1" if self.opts.host in ("0.0.0.0", "") else self.opts.host
        self.url = f"ws://{host}:{self.port}/ws"
        self.dashboard_url = f"http://{host}:{self.port}/"
        self.coordinator = self._child(
            "coordinator",
            "coordinator",
            api_token=self.token,
            port=self.port,
            host=self.opts.host,
            shutdown_drain_seconds=0,
        )
        self.coordinator.spawn()
        if self.opts.autoscale is not None:
            policy = self.opts.scale_policy()
            self.agents = [self._agent(i) for i in range(policy.max_agents)]
            self._paused.update(a.name for a in self.agents)
            self._scaler_broker = await open_broker(self.broker.settings(self.settings))
            self.autoscaler = Autoscaler(
                policy,
                self._scaler_broker,
                start=self._start_agent,
                stop=self._stop_agent,
                running=lambda i: self.agents[i].running,
                interval=self.opts.autoscale_interval,
                say=self.say,
            )
            self.autoscaler.scale_to(policy.min_agents)
            sizing = f"{policy.min_agents}..{policy.max_agents} agents (autoscaled)"
        else:
            self.agents = [self._agent(i) for i in range(self.opts.agents)]
            for agent in self.agents:
                agent.spawn()
            sizing = f"{self.opts.agents} agent(s)"
        self.write_manifest()
        await self._wait_coordinator(f"http://{host}:{self.port}/readyz")
        self.say(f"agentswarm local: {sizing}, {self.opts.broker} broker, state in {self.state}")
        self.say(f"  dashboard    {self.dashboard_url}")
        self.say(f"  coordinator  {self.url}")
        self.say(f"  token        {self.token}")
        self.say(f"  metrics      http://{host}:{self.port}/metrics")
        self.say(f"  logs         {self.state / 'logs'}")
        self.say(f"  try: AGENTSWARM_URL={self.url} AGENTSWARM_API_TOKEN={self.token} \\")
        self.say("         agentswarm submit --payload '{\"steps\": 5}'")

    # -- running and stopping -----------------------------------------------------------------------------
    def _start_agent(self, index: int) -> None:
        agent = self.agents[index]
        self._paused.discard(agent.name)
        agent.spawn()
        self.write_manifest()

    async def _stop_agent(self, index: int) -> None:
        """Scale in: SIGTERM (the agent stores a checkpoint and leaves its task to others), wait, SIGKILL."""
        agent = self.agents[index]
        self._paused.add(agent.name)
        await agent.stop_async(self.opts.stop_timeout)

    async def supervise(self) -> None:
        """Restart any child that exits, under the same identity (see :mod:`agentswarm.local.supervisor`),
        and resize the agents with the backlog when autoscaling (see :mod:`agentswarm.local.autoscale`)."""
        self.supervisor = Supervisor(self.children, self.say, on_restart=self.write_manifest)
        self.supervisor.paused = self._paused
        if self.autoscaler is None:
            await self.supervisor.run()
            return
        scaling = asyncio.create_task(self.autoscaler.run(), name="autoscaler")
        try:
            await self.supervisor.run()
        finally:
            scaling.cancel()
            await asyncio.gather(scaling, return_exceptions=True)

    def kill_all(self) -> None:
        """SIGKILL every child's process group (second Ctrl-C)."""
        for child in reversed(self.children):
            child.signal_group(signal.SIGKILL)

    async def stop(self) -> None:
        """Agents first (they checkpoint and leave their task unacknowledged), then coordinator, broker."""
        self._stopping = True
        if self.supervisor is not None:
            self.supervisor.stopping = True
        timeout = self.opts.stop_timeout
        await asyncio.gather(*(a.stop_async(timeout) for a in self.agents))
        if self._scaler_broker is not None:
            with contextlib.suppress(Exception):
                await self._scaler_broker.close()
            self._scaler_broker = None
        if self.coordinator is not None:
            await self.coordinator.stop_async(timeout)
        if self.broker is not None and self.broker.server is not None:
            await self.broker.server.stop_async(timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
