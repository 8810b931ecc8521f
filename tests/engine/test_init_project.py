"""A project from ``agentswarm init`` through the real Pulumi engine, and ``pulumi new`` with the template.

* The generated program renders: a ``render`` stack made from the generated ``gke`` stack (the same
  handler, replicas and exposure; the image the gke stack would push; no cluster and no cloud, the Kubernetes
  provider's ``renderYamlToDirectory``) goes through ``pulumi up`` with the binaries ``scripts/pulumi-engine``
  built; the manifests validate strictly against Kubernetes 1.33 and the agent StatefulSet runs the project's
  handler from the project's image. Then ``pulumi destroy`` empties the state.
* ``pulumi new templates/agentswarm-python --generate-only`` (the real CLI, offline: a local template needs no
  network and ``--generate-only`` no backend) writes the very files ``agentswarm init`` writes; its
  ``Pulumi.yaml`` differs only by the ``pulumi:template`` tag ``pulumi new`` adds to every project.

Both fail, not skip, when the engine is not built.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from agentswarm.scaffold import TEMPLATE_DIR, init_project, template_files

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "render_check.py"
ENGINE = REPO / "scripts" / "pulumi-engine"
HANDLER = "myswarm.handlers:plan"
IMAGE = "europe-west1-docker.pkg.dev/my-gcp-project/agentswarm/myswarm"
DESCRIPTION = "Research agents of the platform team"

if "render_check" in sys.modules:  # loaded by test_render_stack.py
    rc: Any = sys.modules["render_check"]
else:
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    rc = importlib.util.module_from_spec(spec)
    sys.modules["render_check"] = rc
    spec.loader.exec_module(rc)


def _engine_built() -> None:
    built = subprocess.run([str(ENGINE), "--check"], capture_output=True, text=True, check=False)
    assert built.returncode == 0, (
        "the Pulumi engine is not built at the pinned versions; run scripts/pulumi-engine before pytest "
        f"(AGENTSWARM_ENGINE_DIR={os.environ.get('AGENTSWARM_ENGINE_DIR', '<repo>/.pulumi-engine')})"
    )


def _render_stack(project: Path, render: Path) -> dict[str, Any]:
    """The generated gke stack, re-pointed at a render directory: no cluster, no GCP, a prebuilt image."""
    config: dict[str, Any] = yaml.safe_load((project / "Pulumi.gke.yaml").read_text())["config"]
    config.pop("agentswarm:gcp")
    config["agentswarm:cluster"] = {"create": False}
    config["agentswarm:kubernetes"] = {"render_yaml_to_directory": str(render)}
    config["agentswarm:image"] = {"repository": IMAGE, "tag": "0.1.0", "pull_policy": "IfNotPresent"}
    config["agentswarm:agents"] = {**config["agentswarm:agents"], "dedicated_nodes": False}
    # without the gcp section nothing reserves the TLS address: name one reserved elsewhere
    config["agentswarm:coordinator"] = {
        **config["agentswarm:coordinator"],
        "tls": {"static_ip_name": "myswarm-ip"},
    }
    return {"config": config}


@pytest.mark.timeout(900)
def test_generated_project_renders_through_the_real_engine(tmp_path: Path) -> None:
    _engine_built()
    project, home, state, render = (tmp_path / n for n in ("research-swarm", "home", "state", "render"))
    home.mkdir()
    state.mkdir()
    init_project(project)
    stack = _render_stack(project, render)
    (project / "Pulumi.render.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))
    assert stack["config"]["agentswarm:agents"]["handler"] == HANDLER  # as generated

    report = rc.Report()
    log = tmp_path / "pulumi.log"
    bin_dir = rc.engine_bin()
    pulumi = str(bin_dir / "pulumi")
    report.step(rc.prepare_virtualenv(project, project))
    env = rc.engine_env(bin_dir, home)
    token, password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    rc.run([pulumi, "login", f"file://{state}"], project, env, report, log)
    rc.run([pulumi, "stack", "init", "render", "--non-interactive"], project, env, report, log)
    try:
        for key, value in (("agentswarm:api_token", token), ("agentswarm:redis_password", password)):
            proc = subprocess.run(
                [pulumi, "config", "set", "--secret", key, "-s", "render"],
                cwd=project,
                env=env,
                input=value,
                capture_output=True,
                text=True,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
        flags = ["-s", "render", "--non-interactive", "--color", "never"]
        try:
            rc.run([pulumi, "up", "--yes", "--skip-preview", *flags], project, env, report, log)
        except rc.CheckFailed as exc:
            pytest.fail(f"{exc}\n--- log tail ---\n" + "\n".join(log.read_text().splitlines()[-60:]))
        outputs = json.loads(
            subprocess.run(
                [pulumi, "stack", "output", "--json", "-s", "render"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert outputs["handler"] == HANDLER and outputs["agent_statefulset"] == "myswarm-agent"

        manifests = rc.read_manifests(render)
        rc.validate_manifests(manifests, REPO / "components" / "schemas", report)
        assert report.problems == []
        [sts] = [m for m in manifests if m.kind == "StatefulSet" and m.name == "myswarm-agent"]
        assert sts.namespace == "myswarm"
        assert sts.doc["spec"]["replicas"] == 10
        [container] = sts.doc["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{IMAGE}:0.1.0"
        env_vars = {e["name"]: e.get("value") for e in container["env"]}
        assert env_vars["AGENTSWARM_HANDLER"] == HANDLER
        [coordinator] = [m for m in manifests if m.kind == "Deployment" and m.name == "myswarm-coordinator"]
        assert coordinator.doc["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:0.1.0"
        secret = next(m for m in manifests if m.kind == "Secret" and m.name == "myswarm-api-token")
        assert base64.b64decode(secret.doc["data"]["token"]).decode() == token
    finally:
        rc.run([pulumi, "destroy", "--yes", "--skip-preview", "-s", "render"], project, env, report, log)
        assert rc.stack_resource_count(pulumi, project, env, "render") == 0
        assert not list(render.rglob("*.yaml")) if render.exists() else True


@pytest.mark.timeout(300)
def test_pulumi_new_with_the_template_makes_what_init_makes(tmp_path: Path) -> None:
    _engine_built()
    home, by_pulumi, by_init = tmp_path / "home", tmp_path / "pulumi-new", tmp_path / "init"
    for d in (home, by_pulumi):
        d.mkdir()
    template = REPO / "templates" / "agentswarm-python"  # the published path (it is the packaged template)
    env = rc.engine_env(rc.engine_bin(), home)
    proc = subprocess.run(
        [
            str(rc.engine_bin() / "pulumi"),
            "new",
            str(template),
            "--generate-only",
            "--yes",
            "--name",
            "research-swarm",
            "--description",
            DESCRIPTION,
        ],
        cwd=by_pulumi,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    init_project(by_init, "research-swarm", DESCRIPTION)

    made = sorted(p.relative_to(by_pulumi) for p in by_pulumi.rglob("*") if p.is_file())
    assert made == template_files()
    for rel in made:
        if rel == Path("Pulumi.yaml"):
            continue
        assert (by_pulumi / rel).read_bytes() == (by_init / rel).read_bytes(), rel
    # Pulumi.yaml: the same text, then the tag `pulumi new` adds, naming the template it came from.
    tag = f"config:\n  pulumi:tags:\n    value:\n      pulumi:template: {template}\n"
    assert (by_pulumi / "Pulumi.yaml").read_text() == (by_init / "Pulumi.yaml").read_text() + tag
    assert yaml.safe_load((by_init / "Pulumi.yaml").read_text())["description"] == DESCRIPTION
    assert TEMPLATE_DIR == template.resolve()
