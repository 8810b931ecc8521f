"""The research swarm example (examples/research_swarm) runs to completion in ``agentswarm local``.

Once offline against pydantic-ai's ``TestModel``, and once against an OpenAI-compatible endpoint given by the
three variables: the wire-format test server of llm_support, answering as planner, researcher and writer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llm_support import FakeOpenAI, Reply

pytestmark = pytest.mark.timeout(240)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_research_swarm_runs_in_local_mode_against_test_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(EXAMPLES), os.environ.get("PYTHONPATH", "")] if p)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "research_swarm",
            "--json",
            "--agents",
            "2",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=200,
    )
    local_log = tmp_path / "s" / "research-swarm-local.out"
    assert proc.returncode == 0, proc.stdout + proc.stderr + local_log.read_text()
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["researchers"] == 3
    report = outcome["report"]
    for topic in ("durable execution", "checkpoints", "token costs"):
        assert f"{topic}: " in report
    assert "A checkpoint is a versioned, checksummed snapshot" in report  # found by a researcher's tool
    # planner 2 calls (research, then the report), each researcher 2 calls (search, then answer).
    assert outcome["usage"]["requests"] == 2 + 3 * 2
    assert outcome["usage"]["tool_calls"] == 1 + 3
    assert "spawned 3 researchers" in proc.stdout and "parked until its researchers finish" in proc.stdout
    assert "calls search_notes" in proc.stdout  # the researchers' tool calls reached the client as events
    assert "stopped" in local_log.read_text()  # the local swarm was shut down cleanly


def _system_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content")) for m in messages if m["role"] in ("system", "developer"))


def research_model(messages: list[dict[str, Any]]) -> Reply:
    """A scripted model playing the planner and the researchers, told apart by their instructions."""
    system = _system_text(messages)
    user = next(str(m["content"]) for m in messages if m["role"] == "user")
    tool_results = [str(m["content"]) for m in messages if m["role"] == "tool"]
    if "Split the research question" in system:
        if not tool_results:
            return Reply(tool_calls=[("plan-1", "research", {"subtopics": ["checkpoints", "queues"]})])
        findings = json.loads(tool_results[0])
        return Reply(text="REPORT: " + " | ".join(findings))
    if not tool_results:
        return Reply(tool_calls=[(f"search-{user}", "search_notes", {"query": user})])
    return Reply(text=f"On {user}: {json.loads(tool_results[0])[0]}")


async def test_research_swarm_against_an_openai_compatible_endpoint(tmp_path: Path) -> None:
    async with FakeOpenAI(research_model) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(EXAMPLES), os.environ.get("PYTHONPATH", "")] if p)
        env |= {
            "AGENTSWARM_LLM_BASE_URL": server.base_url,
            "AGENTSWARM_LLM_API_KEY": "sk-example",
            "AGENTSWARM_LLM_MODEL": "fake-gpt",
        }
        argv = ["-m", "research_swarm", "What makes agents durable?", "--json", "--agents", "2"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            "--state-dir",
            str(tmp_path / "s"),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=200)
    text = out.decode()
    assert proc.returncode == 0, text + (tmp_path / "s" / "research-swarm-local.out").read_text()
    outcome = json.loads(text.strip().splitlines()[-1])
    assert outcome["researchers"] == 2
    assert outcome["report"].startswith("REPORT: On checkpoints: checkpoints: A checkpoint is a versioned")
    assert "On queues: queues: Work queues with acknowledgements" in outcome["report"]
    # planner 2 (research, report) + researchers 2 x 2; every call streamed, with the key from the variable.
    assert outcome["usage"]["requests"] == 6 == len(server.requests)
    assert all(r.get("stream") and r["model"] == "fake-gpt" for r in server.requests)
    assert set(server.auth) == {"Bearer sk-example"}
    assert outcome["usage"]["input_tokens"] > 0
