"""The operator's registry of functions a model may call through the OpenAI-compatible handler.

Write plain (sync or async) functions with type hints and docstrings, register them, and point
``AGENTSWARM_LLM_TOOLS`` at the registry::

    # myproject/tools.py
    from agentswarm.llm.tools import ToolRegistry

    tools = ToolRegistry()

    @tools.tool
    async def search(query: str, limit: int = 5) -> list[str]:
        \"\"\"Search the knowledge base.\"\"\"
        ...

    # AGENTSWARM_LLM_TOOLS=myproject.tools:tools

The JSON schema the model sees comes from the signature (pydantic), the description from the docstring.
Arguments the model sends are validated against the same schema before the function runs; a validation
error or an exception in the function is returned to the model as the tool's result
(``{"error": "..."}``) so it can correct itself, as the OpenAI tool-calling protocol expects. Results are
sent back as JSON. Payloads can only choose among registered tools, by name: nothing a client sends picks
a module or a function outside the registry.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_jsonable_python

from agentswarm.llm.errors import LLMConfigError, PayloadError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Tool:
    """One registered function with its argument model."""

    name: str
    description: str
    func: Callable[..., Any]
    args_model: type[BaseModel]

    def spec(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list (OpenAI function-tool format)."""
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }

    async def call(self, arguments: str) -> str:
        """Run the tool with the model's JSON arguments; the result (or the error) as JSON text."""
        try:
            raw = json.loads(arguments or "{}")
            args = self.args_model.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            return json.dumps({"error": f"invalid arguments for {self.name}: {exc}"})
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        try:
            if inspect.iscoroutinefunction(self.func):
                result = await self.func(**kwargs)
            else:
                result = await asyncio.to_thread(self.func, **kwargs)
        except Exception as exc:
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        return json.dumps(to_jsonable_python(result, fallback=repr), ensure_ascii=False)


class ToolRegistry:
    """Named tools; ``@registry.tool`` registers a function."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def tool(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Any:
        """Register ``func`` (usable as ``@registry.tool`` or ``@registry.tool(name=...)``)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or f.__name__
            if not _NAME_RE.match(tool_name):
                raise ValueError(f"tool name {tool_name!r}: 1-64 characters from A-Z, a-z, 0-9, '_' and '-'")
            if tool_name in self._tools:
                raise ValueError(f"tool {tool_name!r} is registered twice")
            hints = get_type_hints(f)
            fields: dict[str, Any] = {}
            for param in inspect.signature(f).parameters.values():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    raise ValueError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
                default = ... if param.default is param.empty else param.default
                fields[param.name] = (hints.get(param.name, Any), default)
            model = create_model(f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields)
            doc = description or inspect.getdoc(f) or ""
            self._tools[tool_name] = Tool(tool_name, doc, f, model)
            return f

        return register(func) if func is not None else register

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def select(self, names: Iterable[str] | None) -> list[Tool]:
        """The tools a payload asked for (all when ``names`` is None); unknown names are a payload error."""
        if names is None:
            return [self._tools[n] for n in self.names]
        chosen = []
        for n in names:
            if not isinstance(n, str) or n not in self._tools:
                raise PayloadError(
                    f"payload.tools: {n!r} is not a registered tool (registered: {self.names})"
                )
            chosen.append(self._tools[n])
        return chosen


def load_registry(ref: str, variable: str = "AGENTSWARM_LLM_TOOLS") -> ToolRegistry:
    """Import the operator's ``module:attribute`` registry."""
    if not _REF_RE.match(ref):
        raise LLMConfigError(f"{variable}={ref!r}: expected 'package.module:attribute'")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LLMConfigError(f"{variable}={ref!r}: cannot import {module_name!r}: {exc}") from exc
    registry = getattr(module, attr, None)
    if not isinstance(registry, ToolRegistry):
        raise LLMConfigError(
            f"{variable}={ref!r}: {type(registry).__name__} is not an agentswarm ToolRegistry"
        )
    return registry
