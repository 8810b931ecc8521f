"""``python -m research_swarm "question"``: run the research swarm and print its report.

By default this starts ``agentswarm local`` (the embedded broker, a coordinator and ``--agents`` agent
processes running ``agentswarm.handlers.pydantic_ai:handle``), runs the swarm, prints the report and
stops the local swarm. With ``--url``/``AGENTSWARM_URL`` (and ``AGENTSWARM_API_TOKEN``) it uses a running
swarm instead, whose agents must run the pydantic-ai handler with ``research_swarm`` importable and
``AGENTSWARM_PYDANTIC_AI_ALLOWED=research_swarm.agents:*``.

The orchestration is done here, by the client: plan (one task), research every sub-topic (one task
each, in parallel on the agents), write (one task). Each task is durable on its own: kill an agent
mid-way and the task resumes on its restart without paying again for the model calls it made.
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

from agentswarm.client import Backoff, SwarmClient
from agentswarm.protocol import EventFrame

HANDLER = "agentswarm.handlers.pydantic_ai:handle"
PLANNER = "research_swarm.agents:planner"
RESEARCHER = "research_swarm.agents:researcher"
WRITER = "research_swarm.agents:writer"
MAX_SUBTOPICS = 5


class LocalSwarmProcess:
    """``agentswarm local`` as a child process, reachable once it printed that it is running."""

    def __init__(self, state_dir: Path, agents: int, broker: str) -> None:
        examples = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [examples, env.get("PYTHONPATH", "")] if p)
        env["AGENTSWARM_PYDANTIC_AI_AGENT"] = RESEARCHER
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
    elif data.get("type") == "started" and data.get("attempt", 1) > 1:
        print(
            f"  [{frame.task_id}] resumed on {data['agent']} from checkpoint {data['resumed_from_version']}"
        )


async def _run(client: SwarmClient, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submit tasks, follow them, return their results in order (fail loudly on a dead task)."""
    ids = await client.submit(specs)
    watches = await client.watch(ids, on_event=_show)
    out = []
    for task_id in ids:
        result = watches[task_id].result
        if result is None or result.status != "done":
            raise SystemExit(f"task {task_id} failed: {result.error if result else 'no result'}")
        out.append(result.result)
    return out


async def research(client: SwarmClient, question: str) -> dict[str, Any]:
    """Plan, research each sub-topic in parallel, write; returns the report and the total usage."""
    run = uuid.uuid4().hex[:8]
    print(f"planning: {question}", flush=True)
    [plan] = await _run(
        client, [{"task_id": f"{run}-plan", "payload": {"prompt": question, "agent": PLANNER}}]
    )
    subtopics = [str(s) for s in plan["output"]["subtopics"]][:MAX_SUBTOPICS]
    print(f"researching {len(subtopics)} sub-topics in parallel: {', '.join(subtopics)}", flush=True)
    specs = [
        {"task_id": f"{run}-research-{i}", "payload": {"prompt": topic, "agent": RESEARCHER}}
        for i, topic in enumerate(subtopics)
    ]
    findings = await _run(client, specs)
    notes = "\n\n".join(f"## {t}\n{f['output']}" for t, f in zip(subtopics, findings, strict=True))
    print("writing the report", flush=True)
    prompt = f"Question: {question}\n\nFindings:\n\n{notes}"
    [report] = await _run(
        client, [{"task_id": f"{run}-write", "payload": {"prompt": prompt, "agent": WRITER}}]
    )
    usage = {"input_tokens": 0, "output_tokens": 0, "requests": 0, "tool_calls": 0}
    for r in [plan, *findings, report]:
        for key in usage:
            usage[key] += int(r["usage"][key])
    return {
        "question": question,
        "subtopics": subtopics,
        "findings": [f["output"] for f in findings],
        "report": report["output"],
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
