"""The Pulumi program ``agentswarm init`` generates, run under mocks with each of its stacks as generated.

It imports ``AgentSwarm`` with typed args and builds the image from the project's own Dockerfile; its agents
run the project's handler. (The same program through the real engine: tests/engine/test_init_project.py.)
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from agentswarm.scaffold import init_project
from mockharness import MOCK_DIGEST, Recording, only_tools_on_path, run_mocked

HANDLER = "myswarm.handlers:plan"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init") / "research-swarm"
    init_project(root)
    return root


def _run(project: Path, stack: str) -> Recording:
    config = yaml.safe_load((project / f"Pulumi.{stack}.yaml").read_text())["config"]
    program = str(project / "__main__.py")
    with only_tools_on_path("kind", "docker"):
        return run_mocked(lambda: runpy.run_path(program, run_name="__main__"), config, stack)


def _agents(rec: Recording) -> dict[str, Any]:
    [sts] = [m for m in rec.kinds("StatefulSet") if m["metadata"]["name"] == "myswarm-agent"]
    assert sts["metadata"]["namespace"] == "myswarm"
    container: dict[str, Any] = sts["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_local_stack_builds_the_project_image_into_kind(project: Path) -> None:
    rec = _run(project, "local")
    image = rec.one("docker-build:index:Image").values
    root = pulumi.get_root_directory()  # the mocks' placeholder root stands for the project directory
    assert image["context"] == {"location": os.path.normpath(root)}
    assert image["dockerfile"] == {"location": os.path.join(root, "Dockerfile")}
    assert image["tags"] == ["myswarm:dev"] and image["load"] is True
    load = rec.one("command:local:Command", "myswarm-kind-load").values
    assert load["create"] == "kind load docker-image myswarm:dev --name myswarm"
    agents = _agents(rec)
    assert agents["image"] == "myswarm:dev"
    assert _env(agents)["AGENTSWARM_HANDLER"] == HANDLER
    assert len([m for m in rec.kinds("StatefulSet") if m["metadata"]["name"] == "myswarm-agent"]) == 1


def test_gke_stack_pushes_the_project_image_and_runs_the_handler(project: Path) -> None:
    rec = _run(project, "gke")
    image = rec.one("docker-build:index:Image").values
    pushed = "europe-west1-docker.pkg.dev/my-gcp-project/agentswarm/myswarm:0.1.0"
    assert image["tags"] == [pushed] and image["push"] is True
    assert image["dockerfile"]["location"].endswith("/Dockerfile")
    agents = _agents(rec)
    assert agents["image"] == f"{pushed}@{MOCK_DIGEST}"
    assert _env(agents)["AGENTSWARM_HANDLER"] == HANDLER
    cluster = rec.one("gcp:container/cluster:Cluster").values
    assert cluster["project"] == "my-gcp-project" and cluster["location"] == "europe-west1-b"


def test_a_bad_value_in_a_generated_stack_is_one_line(project: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((project / "Pulumi.gke.yaml").read_text())["config"]
    config["agentswarm:agents"] = {**config["agentswarm:agents"], "handler": "myswarm/handlers.py"}
    program = str(project / "__main__.py")
    with pytest.raises(pulumi.RunError) as info:
        run_mocked(lambda: runpy.run_path(program, run_name="__main__"), config, "gke")
    message = str(info.value)
    assert "\n" not in message and "agents.handler" in message and "myswarm/handlers.py" in message
