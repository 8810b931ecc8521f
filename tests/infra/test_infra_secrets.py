"""Handler settings and secrets reach the agent pods: plain values as env, secrets only as mounted files."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from agentswarm.settings import unknown_variables
from mockharness import Recording, is_secret, run_program
from test_infra_validation import validate

from components.secrets import CSI_DRIVER, SECRET_ENV_DIR, SECRET_MANAGER_DIR

HANDLER = "agentswarm.handlers.openai_chat:handle"
OPENAI_KEY = "sk-live-0123456789abcdefghijklmnop"
OTHER_KEY = "other-secret-value-9876543210"
SM_KEY = "projects/my-project/secrets/anthropic-key/versions/latest"
SM_OTHER = "projects/other-project/secrets/search-key/versions/3"
GKE = {
    "agentswarm:platform": "gke",
    "agentswarm:cluster": {"create": False},
    "agentswarm:gcp": {"project": "my-project", "workload_identity": True},
    "agentswarm:coordinator": {"tls": {"mode": "none"}},
}
AGENTS = {
    "env": {"OPENAI_BASE_URL": "https://api.example.com/v1", "AGENT_MODEL": "gpt-x"},
    "secret_env": {"OPENAI_API_KEY": OPENAI_KEY, "OTHER_KEY": OTHER_KEY},
    "secret_manager": {"ANTHROPIC_API_KEY": SM_KEY, "SEARCH_KEY": SM_OTHER},
}


def _agent_pod(rec: Recording) -> dict[str, Any]:
    (sts,) = [s for s in rec.kinds("StatefulSet") if s["metadata"]["name"] == "agentswarm-agent"]
    pod: dict[str, Any] = sts["spec"]["template"]["spec"]
    return pod


def _run(agents: dict[str, Any], secret: bool = True) -> Recording:
    return run_program(
        {**GKE, "agentswarm:agents": {"handler": HANDLER, **agents}},
        secret_keys=["agentswarm:agents"] if secret else [],
    )


def test_plain_env_secret_files_and_secret_manager_reach_the_agent_pod() -> None:
    rec = _run(AGENTS)
    pod = _agent_pod(rec)
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OPENAI_BASE_URL"] == "https://api.example.com/v1" and env["AGENT_MODEL"] == "gpt-x"
    assert env["OPENAI_API_KEY_FILE"] == f"{SECRET_ENV_DIR}/OPENAI_API_KEY"
    assert env["OTHER_KEY_FILE"] == f"{SECRET_ENV_DIR}/OTHER_KEY"
    assert env["ANTHROPIC_API_KEY_FILE"] == f"{SECRET_MANAGER_DIR}/ANTHROPIC_API_KEY"
    assert env["AGENTSWARM_SECRET_ENV_FILES"] == "ANTHROPIC_API_KEY,OPENAI_API_KEY,OTHER_KEY,SEARCH_KEY"
    assert "OPENAI_API_KEY" not in env and "ANTHROPIC_API_KEY" not in env

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["secret-env"] == {"name": "secret-env", "mountPath": SECRET_ENV_DIR, "readOnly": True}
    assert volumes["secret-env"]["secret"]["secretName"] == "agentswarm-agent-env"
    assert mounts["secret-manager"]["mountPath"] == SECRET_MANAGER_DIR
    assert volumes["secret-manager"]["csi"] == {
        "driver": CSI_DRIVER,
        "readOnly": True,
        "volumeAttributes": {"secretProviderClass": "agentswarm-agent-secrets"},
    }

    (env_secret,) = [r for r in rec.of_type("kubernetes:core/v1:Secret") if r.name.endswith("-env-secret")]
    assert is_secret(env_secret.inputs["stringData"])
    assert env_secret.values["stringData"] == {"OPENAI_API_KEY": OPENAI_KEY, "OTHER_KEY": OTHER_KEY}

    (spc,) = rec.kinds("SecretProviderClass")
    validate(spc)
    assert spc["spec"]["provider"] == "gke"
    assert json.loads(spc["spec"]["parameters"]["secrets"]) == [
        {"resourceName": SM_KEY, "path": "ANTHROPIC_API_KEY"},
        {"resourceName": SM_OTHER, "path": "SEARCH_KEY"},
    ]

    bindings = rec.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert sorted((b.values["project"], b.values["secretId"]) for b in bindings) == [
        ("my-project", "anthropic-key"),
        ("other-project", "search-key"),
    ]
    for b in bindings:
        assert b.values["role"] == "roles/secretmanager.secretAccessor"
        # the agents' GCP service account (AgentIdentity), which their KSA impersonates
        assert b.values["member"] == "serviceAccount:agentswarm-agents@mock-project.iam.gserviceaccount.com"


def test_handler_settings_and_keys_are_known_to_the_runtime() -> None:
    """AGENTSWARM_LLM_* settings and their _FILE paths are not taken for typos by the agent."""
    rec = _run(
        {"env": {"AGENTSWARM_LLM_MODEL": "gpt-x"}, "secret_env": {"AGENTSWARM_LLM_API_KEY": OPENAI_KEY}}
    )
    env = {e["name"]: e["value"] for e in _agent_pod(rec)["containers"][0]["env"] if "value" in e}
    assert env["AGENTSWARM_LLM_API_KEY_FILE"] == f"{SECRET_ENV_DIR}/AGENTSWARM_LLM_API_KEY"
    assert unknown_variables(env) == []
    assert unknown_variables({**env, "AGENTSWARM_LLM_MODEL_FILE": "/x"}) == ["AGENTSWARM_LLM_MODEL_FILE"]


def test_no_secret_value_appears_outside_its_secret() -> None:
    rec = _run(AGENTS)
    for res in rec.resources:
        if res.name.endswith("-env-secret"):
            continue
        text = json.dumps(res.values, default=str)
        for value in (OPENAI_KEY, OTHER_KEY):
            assert value not in text, res.name
    assert json.dumps(rec.outputs, default=str).count(OPENAI_KEY) == 0


def test_the_check_for_leaks_can_fail() -> None:
    """The same search finds a key put into the pod spec as a plain variable."""
    rec = _run({"env": {"OPENAI_API_KEY": OPENAI_KEY}})
    sts = rec.by_name("agentswarm-agents-statefulset")
    assert OPENAI_KEY in json.dumps(sts.values, default=str)


def test_secret_env_in_plain_config_is_refused() -> None:
    recording = Recording()
    with pytest.raises(pulumi.RunError) as info:
        run_program(
            {**GKE, "agentswarm:agents": {"handler": HANDLER, "secret_env": {"OPENAI_API_KEY": OPENAI_KEY}}},
            recording=recording,
        )
    assert "invalid stack config agents.secret_env: got '<plain text>'; store each value encrypted" in str(
        info.value
    )
    assert OPENAI_KEY not in str(info.value)
    assert recording.resources == []


def test_secret_manager_needs_workload_identity() -> None:
    with pytest.raises(
        pulumi.RunError, match=r"agents\.secret_manager: .* needs platform gke with gcp\.workload_identity"
    ):
        run_program(
            {"agentswarm:platform": "kind", "agentswarm:agents": {"secret_manager": {"K": SM_KEY}}},
        )


def test_without_secrets_the_pod_has_no_secret_volumes() -> None:
    pod = _agent_pod(_run({}, secret=False))
    assert {v["name"] for v in pod["volumes"]}.isdisjoint({"secret-env", "secret-manager"})
    names = {e["name"] for e in pod["containers"][0]["env"]}
    assert "AGENTSWARM_SECRET_ENV_FILES" not in names
