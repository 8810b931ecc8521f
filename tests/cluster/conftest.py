"""Fixtures for applying the stacks to a real control plane (``controlplane.py``).

* ``control_plane`` (session): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on
  loopback, with the project's CRDs installed, two kwok nodes shaped like the GKE pools, and the
  StorageClasses the stacks ask for (``standard-rwo`` as the default, like GKE's; ``standard``, like kind's).
  It fails, never skips, when ``scripts/kube-controlplane`` or ``scripts/pulumi-engine`` has not built its
  binaries.
* ``volumes`` (function): ``volumes(count, size, storage_class)`` pre-creates PersistentVolumes for the
  claims of one test (no provisioner runs here) and deletes them afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .controlplane import REPO, ControlPlane


def _engine_built() -> None:
    built = subprocess.run(
        [str(REPO / "scripts" / "pulumi-engine"), "--check"], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, (
        "the Pulumi engine is not built at the pinned versions; run scripts/pulumi-engine before pytest "
        f"(AGENTSWARM_ENGINE_DIR={os.environ.get('AGENTSWARM_ENGINE_DIR', '<repo>/.pulumi-engine')})"
    )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    _engine_built()
    cp = ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        cp.start()
        cp.add_nodes()
        cp.create_storage_class("standard-rwo", default=True)
        cp.create_storage_class("standard")
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def volumes(control_plane: ControlPlane) -> Iterator[Callable[[int, str, str], list[str]]]:
    prefixes: list[str] = []

    def make(count: int, size: str, storage_class: str) -> list[str]:
        prefix = f"pv-{secrets.token_hex(3)}"
        prefixes.append(prefix)
        return control_plane.create_volumes(prefix, count, size, storage_class)

    yield make
    for prefix in prefixes:
        control_plane.delete_volumes(prefix)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    path = tmp_path / "stack"
    path.mkdir()
    return path
