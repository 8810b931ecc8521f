"""The swarm's token budget reaches both roles as the runtime's variables, and parses there."""

from __future__ import annotations

from typing import Any

import pytest
from agentswarm.settings import Settings
from mockharness import run_program

KIND = {"agentswarm:platform": "kind", "agentswarm:cluster": {"create": False}}


def _env(rec: Any, kind: str, name: str) -> dict[str, str]:
    (obj,) = [m for m in rec.kinds(kind) if m["metadata"]["name"] == name]
    return {
        e["name"]: e["value"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e
    }


def test_budget_env_on_coordinator_and_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = {"tokens_per_day": 2_000_000, "model_tokens_per_day": {"gpt-4o": 500_000}}
    rec = run_program({**KIND, "agentswarm:token_budget": budget})
    for kind, name in (("Deployment", "agentswarm-coordinator"), ("StatefulSet", "agentswarm-agent")):
        env = _env(rec, kind, name)
        assert env["AGENTSWARM_BUDGET_TOKENS_PER_DAY"] == "2000000"
        for key in ("AGENTSWARM_BUDGET_TOKENS_PER_DAY", "AGENTSWARM_BUDGET_MODEL_TOKENS_PER_DAY"):
            monkeypatch.setenv(key, env[key])
        settings = Settings()
        assert settings.budget_tokens_per_day == 2_000_000
        assert settings.budget_model_tokens_per_day == {"gpt-4o": 500_000}


def test_no_budget_no_env() -> None:
    rec = run_program(KIND)
    for kind, name in (("Deployment", "agentswarm-coordinator"), ("StatefulSet", "agentswarm-agent")):
        assert not any(k.startswith("AGENTSWARM_BUDGET") for k in _env(rec, kind, name))
