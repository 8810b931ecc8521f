"""The engine built by ``scripts/pulumi-engine`` runs a Python program end to end, independent of ``infra/``.

A tiny project in a temporary directory (no virtualenv option, so the language host uses ``python3`` from
PATH) registers a Kubernetes provider with ``renderYamlToDirectory``, a ConfigMap that carries a secret stack
config value and a Service, and exports outputs. ``scripts/render_check.py`` then runs preview, up and destroy
on it and validates the manifests. This test separates "the engine works here" from "the render stack works";
like the render-stack test it fails, never skips, when the engine is not built.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import pulumi
import pulumi_kubernetes as k8s

cfg = pulumi.Config()
provider = k8s.Provider("render", render_yaml_to_directory=cfg.require("render_dir"))
opts = pulumi.ResourceOptions(provider=provider)
labels = {"app": "smoke"}
cm = k8s.core.v1.ConfigMap(
    "cm",
    metadata={"name": "smoke", "namespace": "default"},
    data={
        "greeting": cfg.require("greeting"),
        "token_length": cfg.require_secret("token").apply(lambda t: str(len(t))),
    },
    opts=opts,
)
svc = k8s.core.v1.Service(
    "svc",
    metadata={"name": "smoke", "namespace": "default", "labels": labels},
    spec={"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    opts=opts,
)
pulumi.export("configmap", cm.metadata["name"])
"""


@pytest.mark.timeout(600)
def test_engine_runs_a_python_program(tmp_path: Path) -> None:
    built = subprocess.run([str(REPO / "scripts" / "pulumi-engine"), "--check"], check=False)
    assert built.returncode == 0, "the Pulumi engine is not built; run scripts/pulumi-engine before pytest"
    project = tmp_path / "smoke"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(
        "name: smoke\nstackConfigDir: stacks\nruntime:\n  name: python\n", encoding="utf-8"
    )
    (project / "__main__.py").write_text(textwrap.dedent(PROGRAM), encoding="utf-8")
    (project / "stacks" / "Pulumi.render.yaml").write_text(
        yaml.safe_dump({"config": {"smoke:greeting": "hello", "smoke:render_dir": "unused"}}),
        encoding="utf-8",
    )
    keep = tmp_path / "manifests"
    log = tmp_path / "pulumi.log"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "render_check.py"),
            "--project",
            str(project),
            "--render-key",
            "smoke:render_dir",
            "--secret",
            "smoke:token=s3cr3t-value",
            "--no-seed-facts",
            "--keep",
            str(keep),
            "--log",
            str(log),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    detail = f"{proc.stdout}\n{proc.stderr}\n--- log ---\n{log.read_text() if log.exists() else ''}"
    assert proc.returncode == 0, detail
    docs = {p.name: yaml.safe_load(p.read_text()) for p in keep.rglob("*.yaml")}
    assert set(docs) == {"v1-configmap-default-smoke.yaml", "v1-service-default-smoke.yaml"}, docs
    data = docs["v1-configmap-default-smoke.yaml"]["data"]
    # The secret went through the engine's config and secret handling into the program and back out.
    assert data == {"greeting": "hello", "token_length": str(len("s3cr3t-value"))}
    assert "s3cr3t-value" not in log.read_text()
