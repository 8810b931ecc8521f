"""``agentswarm init [DIR]``: a ready-to-run project of your own agents, rendered from the Pulumi template.

One source: the files under ``template/`` are a Pulumi template (``Pulumi.yaml`` has a ``template:`` section,
``${PROJECT}`` and ``${DESCRIPTION}`` are the placeholders ``pulumi new`` substitutes), published in the
repository as ``templates/agentswarm-python``. ``init`` renders the same files the way ``pulumi new``
does (placeholders replaced, YAML values quoted, the ``template:`` section dropped), so a project made either
way is the same project, and the two cannot drift apart.

Nothing is overwritten: when any file the template would write already exists, ``init`` writes nothing and
names the files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

__all__ = ["TEMPLATE_DIR", "ScaffoldError", "init_project", "template_files"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "template"
"""The Pulumi template (``pulumi new <this dir>`` works with it)."""

PROJECT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9])?$")
"""What Pulumi accepts as a project name, narrowed to what is also a valid Python distribution name."""

DEFAULT_DESCRIPTION = "A swarm of our own AI agents (agentswarm)"

_SKIP = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


class ScaffoldError(ValueError):
    """The project cannot be created as asked (a bad name, files in the way); nothing was written."""


def template_files() -> list[Path]:
    """Every file of the template, relative to it, sorted."""
    out = []
    for path in sorted(TEMPLATE_DIR.rglob("*")):
        rel = path.relative_to(TEMPLATE_DIR)
        if path.is_file() and not _SKIP.intersection(rel.parts) and path.suffix != ".pyc":
            out.append(rel)
    return out


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9 _.,()/'-]*[A-Za-z0-9_.)]|[A-Za-z_]")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _yaml_string(value: str) -> str:
    """``value`` as a YAML string: plain where it reads back as the same string (as Pulumi writes it), else
    double-quoted (JSON is valid YAML)."""
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


def _render(rel: Path, text: str, name: str, description: str) -> str:
    """What ``pulumi new`` writes for this file: placeholders replaced (quoted in YAML), and in Pulumi.yaml
    the ``template:`` section dropped."""
    if rel.suffix == ".yaml":
        name, description = _yaml_string(name), _yaml_string(description)
    text = text.replace("${PROJECT}", name).replace("${DESCRIPTION}", description)
    if rel == Path("Pulumi.yaml"):
        head, sep, _ = text.partition("\ntemplate:")
        if sep:
            text = head + "\n"
    return text


def init_project(
    directory: Path, name: str | None = None, description: str = DEFAULT_DESCRIPTION
) -> list[Path]:
    """Create the project in ``directory`` (made if missing); return the files written, relative to it.

    ``name`` defaults to the directory's name. Raises :class:`ScaffoldError` before writing anything when the
    name is not a valid project name or any file would be overwritten.
    """
    directory = Path(directory)
    name = name if name is not None else directory.resolve().name
    if not PROJECT_NAME.match(name):
        raise ScaffoldError(
            f"project name {name!r} is not allowed: letters, digits, '_', '.', '-', starting and ending "
            "with a letter or digit, at most 100 characters (pass --name)"
        )
    if "\n" in description:
        raise ScaffoldError("--description must be one line")
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} exists and is not a directory")
    files = template_files()
    existing = [str(rel) for rel in files if (directory / rel).exists()]
    if existing:
        raise ScaffoldError(
            f"refusing to overwrite existing files in {directory}: {', '.join(existing)} "
            "(choose an empty directory, or move them away)"
        )
    for rel in files:
        source = TEMPLATE_DIR / rel
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            _render(rel, source.read_text(encoding="utf-8"), name, description), encoding="utf-8"
        )
        target.chmod(source.stat().st_mode & 0o777 | 0o600)
    return files


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``init`` sub-command."""
    p = sub.add_parser(
        "init",
        help="create a project of your own agents (handlers, tests, Dockerfile, Pulumi program and stacks)",
        description="Create a ready-to-run project: the same files `pulumi new` makes from the template "
        f"{TEMPLATE_DIR}. Existing files are never overwritten.",
    )
    p.add_argument(
        "directory", nargs="?", default=".", type=Path, help="where (default: the current directory)"
    )
    p.add_argument("--name", help="project name (default: the directory's name)")
    p.add_argument(
        "--description", default=DEFAULT_DESCRIPTION, help="one line for Pulumi.yaml and the README"
    )


def run(args: argparse.Namespace) -> int:
    """Entry of ``agentswarm init``: exit 0, or 2 with one line saying why nothing was written."""
    try:
        files = init_project(args.directory, args.name, args.description)
    except (ScaffoldError, OSError) as exc:
        print(f"agentswarm init: {exc}", file=sys.stderr)
        return 2
    where = args.directory
    print(f"created {len(files)} files in {where}:")
    for rel in files:
        print(f"  {rel}")
    cd = "" if Path(where).resolve() == Path.cwd() else f"cd {where} && "
    print(
        "\nnext (README.md has the details):\n"
        f"  {cd}python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && . .venv/bin/activate\n"
        "  agentswarm local --handler myswarm.handlers:plan   # run locally, no cluster\n"
        "  python -m pytest                                   # test\n"
        "  pulumi stack init local && pulumi up -s local      # deploy (kind; or the gke stack)"
    )
    return 0
