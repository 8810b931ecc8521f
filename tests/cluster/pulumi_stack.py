"""Drive the real Pulumi engine on a copy of the project against the local API server.

The engine, the project copy, the file backend and the virtualenv are set up exactly as
``scripts/render_check.py`` does for the render stack (its helpers are reused); the difference is the stack
config: a project stack's config with the cluster creation off and ``KUBECONFIG`` pointing at the control
plane of ``controlplane.py``, so the Kubernetes provider applies every object for real.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_render_check() -> ModuleType:
    name = "render_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "render_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rc = _load_render_check()


@dataclass
class Result:
    """One pulumi command: its exit code and everything it printed."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class PulumiStack:
    """A stack named ``name`` in a private copy of the project under ``workdir``."""

    workdir: Path
    name: str
    kubeconfig: Path
    log: Path = field(init=False)
    project: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    pulumi: str = field(init=False)

    def __post_init__(self) -> None:
        home, state = self.workdir / "home", self.workdir / "state"
        home.mkdir(parents=True)
        state.mkdir()
        self.project = self.workdir / "project"
        self.log = self.workdir / "pulumi.log"
        rc.copy_project(REPO, self.project)
        report = rc.Report()
        rc.prepare_virtualenv(REPO, self.project)
        bin_dir = rc.engine_bin()
        self.pulumi = str(bin_dir / "pulumi")
        self.env = rc.engine_env(bin_dir, home)
        # The ambient kubeconfig is the provider's: no context is named in the stack config.
        self.env["KUBECONFIG"] = str(self.kubeconfig)
        rc.run([self.pulumi, "login", f"file://{state}"], self.project, self.env, report, self.log)
        rc.run(
            [self.pulumi, "stack", "init", self.name, "--non-interactive"],
            self.project,
            self.env,
            report,
            self.log,
        )

    @property
    def stack_file(self) -> Path:
        return self.project / "stacks" / f"Pulumi.{self.name}.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace the stack's plain config (``agentswarm:`` keys without the prefix); keeps the salt."""
        doc = yaml.safe_load(self.stack_file.read_text()) or {}
        secrets = {
            k: v for k, v in (doc.get("config") or {}).items() if isinstance(v, dict) and "secure" in v
        }
        doc["config"] = {**{f"agentswarm:{k}": v for k, v in config.items()}, **secrets}
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def set_secret(self, key: str, value: str) -> None:
        proc = subprocess.run(
            [self.pulumi, "config", "set", "--secret", f"agentswarm:{key}", "-s", self.name],
            cwd=self.project,
            env=self.env,
            input=value,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr

    def cmd(self, *args: str, timeout: float = 900) -> Result:
        argv = [self.pulumi, *args, "-s", self.name, "--non-interactive", "--color", "never"]
        start = time.monotonic()
        proc = subprocess.run(
            argv, cwd=self.project, env=self.env, capture_output=True, text=True, check=False, timeout=timeout
        )
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        with self.log.open("a") as fh:
            fh.write(f"$ {' '.join(args)}  # exit {proc.returncode}, {result.seconds:.1f}s\n")
            fh.write(f"{proc.stdout}{proc.stderr}\n")
        return result

    def up(self, *extra: str) -> Result:
        return self.cmd("up", "--yes", "--skip-preview", *extra)

    def preview(self) -> Result:
        """``pulumi preview --json``: every step the engine would take, with its operation."""
        return self.cmd("preview", "--json", "--diff")

    def destroy(self) -> Result:
        return self.cmd("destroy", "--yes", "--skip-preview")

    def resources(self) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [self.pulumi, "stack", "export", "-s", self.name],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return list((json.loads(proc.stdout).get("deployment") or {}).get("resources") or [])

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """The Kubernetes objects in the state (``outputs`` as the provider last read them)."""
        return [
            r
            for r in self.resources()
            if r.get("type", "").startswith("kubernetes:")
            and r["type"] != "pulumi:providers:kubernetes"
            and not r.get("type", "").startswith("pulumi:providers:")
        ]


def steps_by_type(preview: Any) -> dict[str, list[str]]:
    """{resource type: [operations]} of a ``pulumi preview --json`` document, ``same`` steps left out."""
    out: dict[str, list[str]] = {}
    for step in preview.get("steps", []):
        op = step.get("op")
        if op == "same":
            continue
        rtype = (step.get("newState") or step.get("oldState") or {}).get("type") or step.get("urn", "")
        out.setdefault(rtype, []).append(op)
    return out
