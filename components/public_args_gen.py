"""components/public_args.py, generated from the config models: the swarm config as TypedDicts and Enums.

Pulumi's schema analyzer (which serves the components to other languages, :mod:`components.provider`) reads
TypedDicts with ``NotRequired`` keys and Enums, but not pydantic models, ``Literal`` fields or unions. So the
public args of the component package mirror :class:`components.config.SwarmConfig` in that shape, and the
component validates what it receives with the pydantic models as before. Generating the mirror from the models
(descriptions, defaults, choices, required keys) is what keeps the two from drifting; a test checks the
committed file is current. Regenerate with ``python -m components.public_args_gen``.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from components.config import SwarmConfig

TARGET = Path(__file__).with_name("public_args.py")

EXCLUDED: dict[str, frozenset[str]] = {
    # The platform layer (cluster, its provider, GCP project resources, image builds) belongs to the stacks'
    # program; the component package deploys the workload layer into a cluster the consumer already reaches.
    "SwarmConfig": frozenset({"kubernetes", "cluster", "gcp"}),
    "ImageConfig": frozenset({"build"}),
}
"""Config keys the component package does not take, per model."""


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _member(value: str) -> str:
    """``IfNotPresent`` -> ``IF_NOT_PRESENT``, ``gke-l7-rilb`` -> ``GKE_L7_RILB``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").upper()


def _short(model: type[BaseModel]) -> str:
    return model.__name__.removesuffix("Config")


class _Writer:
    def __init__(self) -> None:
        self.blocks: dict[str, str] = {}  # name -> source, in dependency order

    def strip(self, annotation: Any) -> tuple[Any, bool]:
        """The annotation without ``Annotated`` and ``None``; whether ``None`` was allowed."""
        optional = False
        while True:
            origin = get_origin(annotation)
            if origin is Annotated:
                annotation = get_args(annotation)[0]
            elif origin in (typing.Union, types.UnionType):
                args = [a for a in get_args(annotation) if a is not type(None)]
                if len(args) != 1:
                    raise TypeError(f"unsupported union {annotation}")
                optional = True
                annotation = args[0]
            else:
                return annotation, optional

    def type_of(self, model: type[BaseModel], field: str, annotation: Any) -> str:
        annotation, _ = self.strip(annotation)
        origin = get_origin(annotation)
        if annotation in (str, int, bool, float):
            return str(annotation.__name__)
        if annotation is SecretStr:
            return "str"
        if origin is Literal:
            return self.enum(f"{_short(model)}{_camel(field)}", get_args(annotation), model, field)
        if origin is list:
            return f"list[{self.type_of(model, field, get_args(annotation)[0])}]"
        if origin is dict:  # string-keyed maps (agents.env, token_budget.model_tokens_per_day)
            return f"dict[str, {self.type_of(model, field, get_args(annotation)[1])}]"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation)
        raise TypeError(f"{model.__name__}.{field}: no public shape for {annotation!r}")

    def enum(self, name: str, values: tuple[Any, ...], model: type[BaseModel], field: str) -> str:
        if name not in self.blocks:
            lines = [f"class {name}(StrEnum):", f'    """Choices of ``{model.__name__}.{field}``."""', ""]
            for value in values:
                lines += [f"    {_member(value)} = {json.dumps(value)}", f'    """``{value}``."""']
            self.blocks[name] = "\n".join(lines)
        return name

    def model(self, model: type[BaseModel]) -> str:
        name = model.__name__
        if name in self.blocks:
            return name
        self.blocks[name] = ""  # reserve: nested models come first
        excluded = EXCLUDED.get(name, frozenset())
        body = []
        for field, info in model.model_fields.items():
            if field in excluded:
                continue
            typ = self.type_of(model, field, info.annotation)
            if not info.is_required():
                typ = f"NotRequired[{typ}]"
            body += [f"    {field}: {typ}", f'    """{field_doc(info)}"""']
        doc = (model.__doc__ or name).strip()
        self.blocks.pop(name)
        self.blocks[name] = "\n".join([f"class {name}(TypedDict):", f'    """{doc}"""', "", *body])
        return name


def field_doc(info: FieldInfo) -> str:
    """The field's description, its default when it is a plain value, else the nested model's docstring."""
    text = info.description
    if text is None:
        annotation, _ = _Writer().strip(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            text = (annotation.__doc__ or "").strip()
    text = (text or "").rstrip()
    default = info.default
    if not info.is_required() and info.default_factory is None and isinstance(default, (str, int, bool)):
        text = f"{text} Default: ``{json.dumps(default)}``.".strip()
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def render() -> str:
    """The source of components/public_args.py."""
    writer = _Writer()
    writer.model(SwarmConfig)
    header = [
        '"""The swarm config as TypedDicts and Enums: the public args shape of the component package.',
        "",
        "Generated from :mod:`components.config` by ``python -m components.public_args_gen``; do not edit.",
        "Validation stays with the pydantic models (:func:`components.provider.swarm_config`).",
        '"""',
        "",
        "# ruff: noqa: E501",
        "# No `from __future__ import annotations`: Pulumi's schema analyzer reads them at runtime.",
        "from enum import StrEnum",
        "from typing import NotRequired, TypedDict",
    ]
    return "\n\n\n".join(["\n".join(header), *writer.blocks.values()]) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else TARGET
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
