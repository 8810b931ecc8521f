"""checkov on the rendered manifests of every stack passes, except the waivers of .checkov.yaml.

The manifests are exactly what the mocked program registers (the same objects the strict-validation tests
check), written as YAML; checkov runs as a CLI from its own virtualenv
(``AGENTSWARM_CHECKOV``, set by ``.ci/run``; it pins packages that would fight ours in one environment).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from mockharness import ROOT, STACK_NAMES, Recording, agentswarm_config, stack_config

CONFIG = ROOT / ".checkov.yaml"
NATS_STACK_WAIVERS = ("CKV_K8S_35",)
"""Secrets as env: the in-cluster NATS password reaches the runtime inside AGENTSWARM_NATS_URL (an env value
Kubernetes expands from the Secret), not yet as a file; waived for stacks with ``broker: nats`` only."""
NATS_STACKS = {
    stack for stack in STACK_NAMES if agentswarm_config(stack_config(stack)).get("broker") == "nats"
}
DEV_STACK_WAIVERS = ("CKV_K8S_43", "CKV_K8S_15")
"""Image by digest, pull policy Always: waived for stacks that run images by tag (see .checkov.yaml)."""
DEV_STACKS = {
    stack
    for stack in STACK_NAMES
    if not agentswarm_config(stack_config(stack)).get("image", {}).get("digest")
}
"""Stacks that run images by tag (a production stack pins its image with ``image.digest``)."""


def _checkov(directory: Path, skip: list[str]) -> dict[str, Any]:
    """checkov's JSON report; ``skip`` replaces the config file's ``skip-check`` (the CLI wins)."""
    exe = os.environ.get("AGENTSWARM_CHECKOV") or shutil.which("checkov")
    assert exe, "checkov is not installed: .ci/run installs it into its own virtualenv (AGENTSWARM_CHECKOV)"
    argv = [
        exe,
        "-d",
        str(directory),
        "--config-file",
        str(CONFIG),
        "--framework",
        "kubernetes",
        "-o",
        "json",
    ]
    out = subprocess.run(
        [*argv, "--skip-check", ",".join(skip or ["NONE"])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.stdout.strip(), out.stderr[-2000:]
    data = json.loads(out.stdout)
    report: dict[str, Any] = data[0] if isinstance(data, list) else data
    return report


def test_checkov_passes_with_only_the_documented_waivers(
    stack_recordings: dict[str, Recording], tmp_path: Path
) -> None:
    """One checkov run over every stack without any waiver; then each failure must be a documented one."""
    for stack in STACK_NAMES:
        with (tmp_path / f"{stack}.yaml").open("w") as f:
            yaml.safe_dump_all(stack_recordings[stack].manifests(), f, sort_keys=False)
    report = _checkov(tmp_path, [])
    everywhere = set(yaml.safe_load(CONFIG.read_text())["skip-check"])
    failed = {
        (Path(f["file_path"]).stem, f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]
    }
    allowed = {
        (stack, check, resource)
        for stack, check, resource in failed
        if check in everywhere
        or (stack in DEV_STACKS and check in DEV_STACK_WAIVERS)
        or (stack in NATS_STACKS and check in NATS_STACK_WAIVERS)
    }
    assert sorted(failed - allowed) == []
    # The waivers are real exceptions (the run above can fail), and the production stack needs no dev waiver.
    assert {check for _, check, _ in failed} <= everywhere | set(DEV_STACK_WAIVERS) | set(NATS_STACK_WAIVERS)
    assert {check for _, check, _ in failed} >= everywhere | set(DEV_STACK_WAIVERS)
    assert "gke-prod" not in DEV_STACKS
    assert not [f for f in failed if f[0] == "gke-prod" and f[1] in DEV_STACK_WAIVERS]
    assert report["summary"]["passed"] > 200  # it did check every stack
