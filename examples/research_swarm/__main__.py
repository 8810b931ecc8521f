"""``python -m research_swarm "question"``: run the research swarm and print its report.

By default this starts ``agentswarm local`` (the embedded broker, a coordinator and ``--agents`` agent
processes running ``agentswarm.handlers.pydantic_ai:handle``), runs the swarm, prints the report and
stops the local swarm. With ``--url``/``AGENTSWARM_URL`` (and ``AGENTSWARM_API_TOKEN``) it uses a running
swarm instead, whose agents must run the pydantic-ai handler with ``research_swarm`` importable and
``AGENTSWARM_PYDANTIC_AI_ALLOWED=research_swarm.agents:*``.

The client submits one task, the planner; the planner's ``research`` tool spawns one researcher task per
sub-topic, which run in parallel on the agents while the planner is parked (holding no agent), and it
writes the report from their findings. Every task is durable on its own: kill an agent mid-way and its
task resumes without paying again for the model and tool calls it finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from agentswarm.client import Backoff, SwarmClient, TaskWatch
from agentswarm.protocol import EventFrame

HANDLER = "agentswarm.handlers.pydantic_ai:handle"
PLANNER = "research_swarm.agents:planner"


class LocalSwarmProcess:
    """``agentswarm local`` as a child process, reachable once it printed that it is running."""

    def __init__(self, state_dir: Path, agents: int, broker: str) -> None:
        examples = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [examples, env.get("PYTHONPATH", "")] if p)
        env["AGENTSWARM_PYDANTIC_AI_AGENT"] = PLANNER
        env["AGENTSWARM_PYDANTIC_AI_ALLOWED"] = "research_swarm.agents:*"
        env["PYTHONUNBUFFERED"] = "1"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.log_path = state_dir / "research-swarm-local.out"
        argv = [sys.executable, "-m", "agentswarm.cli", "local", "--handler", HANDLER]
        argv += ["--agents", str(agents), "--broker", broker, "--state-dir", str(state_dir), "--port", "0"]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, within: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agentswarm local exited ({self.proc.returncode}):\n{self.output()}")
            if re.search(r"running; press Ctrl-C", self.output()):
                manifest: dict[str, Any] = json.loads((self.state_dir / "local.json").read_text())
                return manifest
            time.sleep(0.2)
        raise SystemExit(f"agentswarm local did not start within {within}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def _show(frame: EventFrame) -> None:
    data = frame.data
    if data.get("type") == "tool_call":
        print(f"  [{frame.task_id}] calls {data['tool']}({json.dumps(data.get('args'))[:80]})", flush=True)
    elif data.get("type") == "spawned":
        print(f"  [{frame.task_id}] spawned {len(data['children'])} researchers", flush=True)
    elif data.get("type") == "parked":
        print(f"  [{frame.task_id}] parked until its researchers finish (holding no agent)", flush=True)
    elif data.get("type") == "started" and data.get("attempt", 1) > 1:
        print(
            f"  [{frame.task_id}] resumed on {data['agent']} from checkpoint {data['resumed_from_version']}"
        )


async def research(client: SwarmClient, question: str) -> dict[str, Any]:
    """Run the planner (which spawns the researchers); return its report and the whole tree's usage."""
    root = f"research-{uuid.uuid4().hex[:8]}"
    children: list[str] = []
    child_watches: list[asyncio.Task[dict[str, TaskWatch]]] = []

    def on_event(frame: EventFrame) -> None:
        if frame.data.get("type") == "spawned":
            new = [c for c in frame.data["children"] if c not in children]
            children.extend(new)
            if new:  # follow the researchers live, next to their planner
                child_watches.append(asyncio.create_task(client.watch(new, on_event=_show)))
        _show(frame)

    print(f"planning: {question}", flush=True)
    [task_id] = await client.submit([{"task_id": root, "payload": {"prompt": question, "agent": PLANNER}}])
    watches = await client.watch([task_id], on_event=on_event)
    result = watches[task_id].result
    if result is None or result.status != "done":
        raise SystemExit(f"task {task_id} failed: {result.error if result else 'no result'}")
    outcomes = [result.result]
    for done in await asyncio.gather(*child_watches):
        outcomes += [
            w.result.result for w in done.values() if w.result is not None and w.result.status == "done"
        ]
    usage = {"input_tokens": 0, "output_tokens": 0, "requests": 0, "tool_calls": 0}
    for outcome in outcomes:
        for key in usage:
            usage[key] += int(outcome["usage"][key])
    return {
        "question": question,
        "researchers": len(children),
        "report": result.result["output"],
        "usage": usage,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research_swarm", description=__doc__.splitlines()[0])
    parser.add_argument(
        "question", nargs="?", default="How do durable AI agents avoid paying twice for work?"
    )
    parser.add_argument("--agents", type=int, default=3, help="local agent processes (default %(default)s)")
    parser.add_argument("--broker", choices=("nats", "redis"), default="nats")
    parser.add_argument("--state-dir", default=".agentswarm-research", help="state of the local swarm")
    parser.add_argument("--url", default=os.environ.get("AGENTSWARM_URL"), help="use this running swarm")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    args = parser.parse_args(argv)
    local = None
    if args.url:
        url, token = args.url, os.environ.get("AGENTSWARM_API_TOKEN", "")
    else:
        local = LocalSwarmProcess(Path(args.state_dir), args.agents, args.broker)
        manifest = local.wait_ready()
        url, token = manifest["url"], manifest["token"]
    try:
        client = SwarmClient(url, token, backoff=Backoff(0.1, 2.0), max_retries=30)
        outcome = asyncio.run(research(client, args.question))
    finally:
        if local is not None:
            local.stop()
    if args.json:
        print(json.dumps(outcome))
    else:
        print("\n" + str(outcome["report"]))
        u = outcome["usage"]
        print(
            f"\n{u['requests']} model calls, {u['tool_calls']} tool calls, "
            f"{u['input_tokens']} input + {u['output_tokens']} output tokens"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
