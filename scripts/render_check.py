#!/usr/bin/env python3
"""Run the real Pulumi engine on the ``render`` stack and check what the Kubernetes provider writes.

Why: Pulumi mocks never run the engine, the language host or the Kubernetes provider, so they cannot show
that ``pulumi up`` really produces valid manifests. This check runs ``pulumi preview``, ``pulumi up`` and
``pulumi destroy`` with the binaries built by ``scripts/pulumi-engine``, on a copy of the project, with a
file backend and ``PULUMI_HOME`` in a temporary directory, and the provider's ``renderYamlToDirectory``
pointed at a temporary folder. Nothing is downloaded and nothing in the work tree is written.

Then every written manifest is validated strictly against the Kubernetes 1.36 schemas (kubernetes-validate);
custom resources are validated against the JSON schemas in ``components/schemas``; and the GKE websocket
facts are checked on the engine's own output: a ``cloud.google.com/v1`` BackendConfig with
``spec.timeoutSec`` (3600 unless ``--timeout-sec`` says otherwise), the coordinator Service's
``cloud.google.com/backend-config`` annotation naming it, and its ``cloud.google.com/neg`` annotation.

Exit status 0 only when every step and every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.36.0"
PASSPHRASE = "agentswarm-render-check"
# What the project copy needs to run the program; everything else (tests, docs, .git) stays out.
PROJECT_ITEMS = ("Pulumi.yaml", "infra", "components", "stacks", "agent_image", "pyproject.toml")


class CheckFailed(Exception):
    """A step or a check failed; the message says which and why."""


@dataclass
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.doc.get("metadata", {}).get("namespace", "") or "")

    def annotations(self) -> dict[str, str]:
        return dict(self.doc.get("metadata", {}).get("annotations") or {})

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.api_version} {self.kind} {ns}{self.name} ({self.path.name})"


@dataclass
class Report:
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        self.steps.append(text)
        print(f"render-check: {text}", flush=True)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"render-check: FAIL {text}", file=sys.stderr, flush=True)


# --- engine ---------------------------------------------------------------------------------------------


def engine_bin() -> Path:
    """The bin directory of the built engine; fails with the command to run when it is missing."""
    env_dir = os.environ.get("AGENTSWARM_ENGINE_DIR")
    proc = subprocess.run(
        [str(REPO / "scripts" / "pulumi-engine"), "--print"],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if proc.returncode != 0:
        where = env_dir or str(REPO / ".pulumi-engine")
        raise CheckFailed(
            f"the Pulumi engine is not built in {where}: run scripts/pulumi-engine first "
            f"({proc.stderr.strip()})"
        )
    return Path(proc.stdout.strip())


def engine_env(bin_dir: Path, home: Path) -> dict[str, str]:
    env = os.environ.copy()
    # The binaries on PATH are the plugins: the CLI must use them and never fetch any.
    env.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)
    env.pop("PULUMI_ACCESS_TOKEN", None)
    env.pop("PULUMI_BACKEND_URL", None)
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PULUMI_HOME": str(home),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "NO_COLOR": "1",
        }
    )
    return env


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str], report: Report, log: Path) -> str:
    """Run one pulumi command, tee its output to ``log``, fail with its tail when it fails."""
    start = time.monotonic()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}  # exit {proc.returncode}, {elapsed:.1f}s\n{proc.stdout}{proc.stderr}\n")
    shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        # The engine's diagnostics say what went wrong; a program's traceback after an engine error is noise.
        errors = list(dict.fromkeys(line.strip() for line in lines if "error:" in line))
        summary = "\n".join(errors[:10] or lines[-30:])
        raise CheckFailed(f"`{shown}` exited {proc.returncode} (full output: {log}):\n{summary}")
    report.step(f"{shown} ok ({elapsed:.1f}s)")
    return proc.stdout


# --- project copy ---------------------------------------------------------------------------------------


def copy_project(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache")
    manifest = src / "Pulumi.yaml"
    if not manifest.is_file():
        raise CheckFailed(f"no Pulumi.yaml in {src}")
    main = (yaml.safe_load(manifest.read_text()) or {}).get("main")
    items = list(PROJECT_ITEMS)
    if isinstance(main, str) and main.strip("./"):
        items.append(main.strip("/"))
    else:  # the program is the project root itself
        items.extend(p.name for p in src.glob("*.py"))
    for item in dict.fromkeys(items):
        path = src / item
        if path.is_dir():
            shutil.copytree(path, dst / item, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, dst / item)


def prepare_virtualenv(src: Path, dst: Path) -> str:
    """Give the copy the virtualenv Pulumi.yaml asks for.

    Reuses the work tree's own virtualenv when it has one; otherwise (a fresh CI checkout) creates one that
    sees the packages installed for the interpreter running this check.
    """
    project = yaml.safe_load((dst / "Pulumi.yaml").read_text())
    runtime = project.get("runtime")
    options = (runtime.get("options") or {}) if isinstance(runtime, dict) else {}
    venv = options.get("virtualenv")
    if not venv:
        return "no virtualenv option: the language host uses python3 from PATH"
    if Path(venv).is_absolute():
        return f"virtualenv {venv} (absolute path, used as is)"
    existing = src / venv
    if (existing / "bin" / "python").exists():
        (dst / venv).symlink_to(existing)
        what = f"virtualenv {venv}: the work tree's {existing}"
    else:
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(dst / venv)],
            check=True,
        )
        what = f"virtualenv {venv}: created with --system-site-packages from {sys.executable}"
    # Pulumi passes the relative option unchanged (PULUMI_RUNTIME_VIRTUALENV) to dynamic-provider hosts, which
    # resolve it against the program directory (`main:`), not the project root; point that path at it too.
    main = project.get("main")
    if isinstance(main, str) and main.strip("./"):
        alias = dst / main / venv
        if not alias.exists():
            alias.symlink_to((dst / venv).resolve())
    return what


# --- manifests ------------------------------------------------------------------------------------------


def read_manifests(render_dir: Path) -> list[Manifest]:
    out: list[Manifest] = []
    for path in sorted(render_dir.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix not in (".yaml", ".yml"):
            raise CheckFailed(f"unexpected file in the render directory: {path}")
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise CheckFailed(f"{path} holds a {type(doc).__name__}, not a Kubernetes object")
            out.append(Manifest(path, doc))
    return out


def custom_schemas(schema_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """JSON schemas for custom resources, keyed by (apiVersion, kind).

    The key comes from a schema's ``x-kubernetes-group-version-kind`` or from the ``const``/``enum`` of its
    ``apiVersion`` and ``kind`` properties.
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    if not schema_dir.is_dir():
        return schemas
    for path in sorted(schema_dir.glob("*.json")):
        schema = json.loads(path.read_text())
        for api_version, kind in _schema_keys(schema):
            schemas[(api_version, kind)] = schema
    return schemas


def _schema_keys(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for gvk in schema.get("x-kubernetes-group-version-kind") or []:
        group = gvk.get("group", "")
        version = gvk.get("version", "")
        yield (f"{group}/{version}" if group else version, gvk.get("kind", ""))
    props = schema.get("properties") or {}

    def values(prop: dict[str, Any] | None) -> list[str]:
        if not prop:
            return []
        if "const" in prop:
            return [prop["const"]]
        return list(prop.get("enum") or [])

    for api_version in values(props.get("apiVersion")):
        for kind in values(props.get("kind")):
            yield (api_version, kind)


def validate_manifests(manifests: list[Manifest], schema_dir: Path, report: Report) -> None:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    crs = custom_schemas(schema_dir)
    for m in manifests:
        try:
            kubernetes_validate.validate(m.doc, KUBERNETES_VERSION, strict=True)
            continue
        except SchemaNotFoundError:
            pass
        except kubernetes_validate.ValidationError as exc:
            report.problem(
                f"{m}: invalid for Kubernetes {KUBERNETES_VERSION}: {exc.message} at {list(exc.path)}"
            )
            continue
        schema = crs.get((m.api_version, m.kind))
        if schema is None:
            report.problem(
                f"{m}: no Kubernetes {KUBERNETES_VERSION} schema and no JSON schema in {schema_dir} for it"
            )
            continue
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(m.doc), key=str)
        for err in errors:
            report.problem(f"{m}: invalid against {schema_dir.name}: {err.message} at {list(err.path)}")
    report.step(
        f"validated {len(manifests)} manifests (Kubernetes {KUBERNETES_VERSION} strict, CRs by schema)"
    )


def check_seed_facts(manifests: list[Manifest], timeout_sec: int, coordinator: str, report: Report) -> None:
    """The GKE websocket facts, on the engine's output (not on the program's inputs)."""
    configs = [m for m in manifests if m.kind == "BackendConfig"]
    if not configs:
        report.problem("no BackendConfig was rendered")
        return
    for bc in configs:
        if bc.api_version != "cloud.google.com/v1":
            report.problem(f"{bc}: apiVersion must be cloud.google.com/v1")
        got = (bc.doc.get("spec") or {}).get("timeoutSec")
        if got != timeout_sec or isinstance(got, bool):
            report.problem(f"{bc}: spec.timeoutSec is {got!r}, expected the integer {timeout_sec}")
    services = [m for m in manifests if m.kind == "Service" and coordinator in m.name]
    if not services:
        report.problem(f"no Service whose name contains {coordinator!r} was rendered")
        return
    by_key = {(bc.namespace, bc.name): bc for bc in configs}
    for svc in services:
        for problem in _service_problems(svc, by_key):
            report.problem(f"{svc}: {problem}")
    report.step(
        f"seed facts checked on {len(configs)} BackendConfig(s) and {len(services)} coordinator Service(s)"
    )


def _json_annotation(svc: Manifest, key: str) -> tuple[Any, str | None]:
    """(parsed value, problem) of a JSON-valued annotation."""
    raw = svc.annotations().get(key)
    if raw is None:
        return None, f"no {key} annotation"
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, f"{key} is not JSON ({exc}): {raw!r}"


def _service_problems(svc: Manifest, backend_configs: dict[tuple[str, str], Manifest]) -> list[str]:
    problems: list[str] = []
    ref, problem = _json_annotation(svc, "cloud.google.com/backend-config")
    if problem:
        problems.append(problem)
    else:
        name = ref.get("default") if isinstance(ref, dict) else None
        if not name:
            problems.append(f"cloud.google.com/backend-config has no 'default': {ref!r}")
        elif (svc.namespace, name) not in backend_configs:
            problems.append(
                f"cloud.google.com/backend-config names {name!r}, but no BackendConfig of that name was "
                f"rendered in namespace {svc.namespace!r}"
            )
    neg, problem = _json_annotation(svc, "cloud.google.com/neg")
    if problem:
        problems.append(problem)
    elif not (isinstance(neg, dict) and neg.get("ingress") is True):
        problems.append(f"cloud.google.com/neg should enable ingress NEGs, got {neg!r}")
    return problems


# --- main -----------------------------------------------------------------------------------------------


def stack_resource_count(pulumi: str, cwd: Path, env: dict[str, str], stack: str) -> int:
    proc = subprocess.run(
        [pulumi, "stack", "export", "-s", stack], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    deployment = json.loads(proc.stdout).get("deployment") or {}
    return len(deployment.get("resources") or [])


def check(args: argparse.Namespace) -> Report:
    report = Report()
    bin_dir = engine_bin()
    pulumi = str(bin_dir / "pulumi")
    src = Path(args.project).resolve()
    with tempfile.TemporaryDirectory(prefix="agentswarm-render-") as tmp_name:
        tmp = Path(tmp_name)
        home, state, project, render = tmp / "home", tmp / "state", tmp / "project", tmp / "render"
        home.mkdir()
        state.mkdir()
        log = Path(args.log) if args.log else Path(tempfile.gettempdir()) / "agentswarm-render-check.log"
        log.write_text("")
        copy_project(src, project)
        report.step(prepare_virtualenv(src, project))
        env = engine_env(bin_dir, home)
        version = subprocess.run([pulumi, "version"], env=env, capture_output=True, text=True, check=True)
        report.step(f"engine {version.stdout.strip()} from {bin_dir}")
        stack = args.stack
        try:
            run([pulumi, "login", f"file://{state}"], project, env, report, log)
            run([pulumi, "stack", "init", stack, "--non-interactive"], project, env, report, log)
            run(
                [pulumi, "config", "set", "--path", args.render_key, str(render), "-s", stack],
                project,
                env,
                report,
                log,
            )
            for item in args.secret:
                key, sep, value = item.partition("=")
                if not sep:
                    raise CheckFailed(f"--secret wants KEY=VALUE, got {item!r}")
                # Passed on stdin so the value never shows in a process list or the log.
                secret_cmd = [pulumi, "config", "set", "--secret", key, "-s", stack]
                proc = subprocess.run(
                    secret_cmd, cwd=project, env=env, input=value, capture_output=True, text=True, check=False
                )
                if proc.returncode != 0:
                    raise CheckFailed(f"setting secret {key} failed: {proc.stderr.strip()}")
                report.step(f"pulumi config set --secret {key} ok")
            flags = ["-s", stack, "--non-interactive", "--color", "never"]
            run([pulumi, "preview", *flags], project, env, report, log)
            if render.exists() and any(render.rglob("*.yaml")):
                report.problem(f"preview wrote manifests into {render}; only `up` may")
            out = run([pulumi, "up", "--yes", "--skip-preview", *flags], project, env, report, log)
            print(out.strip().splitlines()[-1] if out.strip() else "", flush=True)
            if not render.is_dir():
                raise CheckFailed(f"pulumi up wrote no render directory at {render}")
            manifests = read_manifests(render)
            if not manifests:
                raise CheckFailed(f"pulumi up rendered no manifests into {render}")
            kinds: dict[str, int] = {}
            for m in manifests:
                kinds[m.kind] = kinds.get(m.kind, 0) + 1
            report.step(f"rendered {len(manifests)} manifests: {dict(sorted(kinds.items()))}")
            if args.keep:
                keep = Path(args.keep)
                if keep.exists():
                    shutil.rmtree(keep)
                shutil.copytree(render, keep)
                report.step(f"kept a copy of the manifests in {keep}")
            validate_manifests(manifests, src / "components" / "schemas", report)
            if not args.no_seed_facts:
                check_seed_facts(manifests, args.timeout_sec, args.coordinator, report)
        finally:
            # Always tear down, even after a failed check, and prove it: no resource left in the state.
            try:
                run(
                    [pulumi, "destroy", "--yes", "--skip-preview", "-s", stack, "--non-interactive"],
                    project,
                    env,
                    report,
                    log,
                )
                left = stack_resource_count(pulumi, project, env, stack)
                if left:
                    report.problem(f"{left} resources left in the state after destroy")
                leftover = [p for p in render.rglob("*.yaml")] if render.exists() else []
                if leftover:
                    report.problem(f"destroy left {len(leftover)} manifests in {render}")
                run([pulumi, "stack", "rm", "--yes", stack], project, env, report, log)
            except CheckFailed as exc:
                report.problem(str(exc))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--project", default=str(REPO), help="project root holding Pulumi.yaml (default: repo)"
    )
    parser.add_argument("--stack", default="render", help="stack name, config in stacks/Pulumi.<stack>.yaml")
    parser.add_argument(
        "--render-key",
        default="agentswarm:kubernetes.render_yaml_to_directory",
        help="config path set to the temporary render directory",
    )
    parser.add_argument(
        "--timeout-sec", type=int, default=3600, help="expected BackendConfig spec.timeoutSec"
    )
    parser.add_argument(
        "--coordinator", default="coordinator", help="substring of the coordinator Service name"
    )
    parser.add_argument(
        "--secret", action="append", default=[], metavar="KEY=VALUE", help="set a secret config value first"
    )
    parser.add_argument("--no-seed-facts", action="store_true", help="skip the GKE fact checks")
    parser.add_argument("--keep", help="copy the rendered manifests to this directory")
    parser.add_argument("--log", help="append the full pulumi output to this file")
    args = parser.parse_args(argv)
    try:
        report = check(args)
    except CheckFailed as exc:
        print(f"render-check: FAIL {exc}", file=sys.stderr)
        return 1
    if report.problems:
        print(f"render-check: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print("render-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
