"""Fixtures for the infra tests; the mock harness itself lives in mockharness.py (a unique module name, so it
never collides with other test directories' conftest modules)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mockharness import STACK_NAMES, Recording, only_tools_on_path, run_stack


def pytest_configure(config: pytest.Config) -> None:
    # Not ours: pulumi's Output.from_input tests a NotImplemented sentinel in a boolean context, and
    # pulumi_gcp warns at import time about its own deprecated aliases.
    config.addinivalue_line(
        "filterwarnings", "ignore:NotImplemented should not be used in a boolean context:DeprecationWarning"
    )
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_gcp")


@pytest.fixture(scope="session")
def stack_recordings() -> Iterator[dict[str, Recording]]:
    """Each committed stack run once per session (read-only for tests); kind and docker are 'installed'."""
    with only_tools_on_path("kind", "docker"):
        recordings = {name: run_stack(name) for name in STACK_NAMES}
    yield recordings
