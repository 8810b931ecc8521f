"""A project of your own builds its image from its own context and Dockerfile, relative to its root.

Pulumi runs the program (and the docker-build provider) in the program directory; the stack's
``image.build.context`` / ``dockerfile`` must mean the project root whatever that directory is. The tests give
the root the engine would report for a real project (the mocks' own is a placeholder).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from mockharness import run_program, stack_config

import components.paths
from components.paths import project_path

USER_IMAGE = {
    "repository": "myswarm",
    "tag": "0.3.0",
    "build": {"enabled": True, "context": ".", "dockerfile": "Dockerfile"},
}


@pytest.fixture
def project_root(monkeypatch: pytest.MonkeyPatch) -> str:
    root = "/home/team/research-swarm"
    monkeypatch.setattr(components.paths.pulumi, "get_root_directory", lambda: root)
    return root


def test_project_path_joins_relative_paths_to_the_root(project_root: str) -> None:
    assert project_path(".") == project_root
    assert project_path("docker/Dockerfile") == f"{project_root}/docker/Dockerfile"
    assert project_path("/abs/ctx") == "/abs/ctx"


def test_without_an_engine_paths_stay_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(components.paths.pulumi, "get_root_directory", lambda: None)
    assert project_path("agent_image") == "agent_image"


def _image(config: dict[str, Any]) -> dict[str, Any]:
    rec = run_program(config)
    [image] = rec.of_type("docker-build:index:Image")
    values: dict[str, Any] = image.values
    return values


def test_gke_build_of_a_user_project(project_root: str) -> None:
    config = stack_config("gke")
    config["agentswarm:image"] = USER_IMAGE
    config["agentswarm:agents"] = {"replicas": 3, "handler": "myswarm.handlers:plan"}
    image = _image(config)
    assert image["context"] == {"location": project_root}
    assert image["dockerfile"] == {"location": f"{project_root}/Dockerfile"}
    # Pushed under its own name, next to where the bundled image would go.
    assert image["tags"] == ["europe-west1-docker.pkg.dev/agentswarm-dev/agentswarm/myswarm:0.3.0"]


def test_kind_build_of_a_user_project(project_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("components.platform.preflight", lambda: None)
    config = stack_config("local")
    config["agentswarm:image"] = {**USER_IMAGE, "tag": "dev", "pull_policy": "IfNotPresent"}
    image = _image(config)
    assert image["context"] == {"location": project_root}
    assert image["tags"] == ["myswarm:dev"] and image["load"] is True


def test_bundled_project_builds_agent_image_from_the_root(project_root: str) -> None:
    """The bundled program lives in infra/; its default context is still <root>/agent_image."""
    image = _image(stack_config("gke"))
    assert image["context"] == {"location": f"{project_root}/agent_image"}
    assert image["dockerfile"] == {"location": f"{project_root}/agent_image/Dockerfile"}
    assert pulumi.get_root_directory() == project_root
