"""Regenerate docs/config.md and docs/config.schema.json: ``python -m components.docs [docs_dir]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from components.config import config_json_schema, config_markdown


def write_docs(docs_dir: str | Path = "docs") -> None:
    out = Path(docs_dir)
    (out / "config.schema.json").write_text(json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n")
    (out / "config.md").write_text(config_markdown())


if __name__ == "__main__":
    write_docs(sys.argv[1] if len(sys.argv) > 1 else "docs")
