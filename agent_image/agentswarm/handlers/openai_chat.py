"""A handler that asks an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI...).

Use with ``AGENTSWARM_HANDLER=agentswarm.handlers.openai_chat:handle``. Configuration (environment):

* ``AGENTSWARM_LLM_BASE_URL``: base URL up to and including ``/v1``, e.g. ``http://ollama:11434/v1``.
* ``AGENTSWARM_LLM_MODEL``: model name, e.g. ``llama3.1:8b``.
* ``AGENTSWARM_LLM_API_KEY``: bearer token (from a Secret), optional for local servers.
* ``AGENTSWARM_LLM_TIMEOUT_SECONDS``: per request, default 120.

Payload: ``{"prompts": ["first question", "follow-up", ...], "system": "optional system prompt"}``. Each
prompt is one step: the conversation so far is the checkpointed state, so an agent killed after the second
answer resumes with the third prompt and does not pay for the first two again. The result is
``{"answers": [...], "model": ...}``. Not exercised by the test suite (it needs a model server).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext


class LLMConfigError(RuntimeError):
    """The AGENTSWARM_LLM_* variables are missing or invalid."""


def _config() -> tuple[str, str, str | None, float]:
    base = os.environ.get("AGENTSWARM_LLM_BASE_URL", "").rstrip("/")
    model = os.environ.get("AGENTSWARM_LLM_MODEL", "")
    if not base.startswith(("http://", "https://")):
        raise LLMConfigError(f"AGENTSWARM_LLM_BASE_URL={base!r}: set it to http(s)://HOST[:PORT]/v1")
    if not model:
        raise LLMConfigError("AGENTSWARM_LLM_MODEL is not set")
    try:
        timeout = float(os.environ.get("AGENTSWARM_LLM_TIMEOUT_SECONDS", "120"))
    except ValueError as exc:
        raise LLMConfigError(f"AGENTSWARM_LLM_TIMEOUT_SECONDS: {exc}") from None
    return base, model, os.environ.get("AGENTSWARM_LLM_API_KEY") or None, timeout


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    base, model, api_key, timeout = _config()
    payload = task.payload if isinstance(task.payload, dict) else {}
    prompts = payload.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("payload.prompts must be a list of strings")
    st: dict[str, Any] = state if isinstance(state, dict) else {}
    messages: list[dict[str, str]] = list(st.get("messages", []))
    answers: list[str] = list(st.get("answers", []))
    if not messages and payload.get("system"):
        messages.append({"role": "system", "content": str(payload["system"])})
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
        for i in range(len(answers), len(prompts)):
            messages.append({"role": "user", "content": prompts[i]})
            resp = await client.post("/chat/completions", json={"model": model, "messages": messages})
            resp.raise_for_status()
            answer = str(resp.json()["choices"][0]["message"]["content"])
            messages.append({"role": "assistant", "content": answer})
            answers.append(answer)
            await ctx.emit({"type": "progress", "step": i + 1, "of": len(prompts)})
            await ctx.checkpoint({"messages": messages, "answers": answers})
    return {"answers": answers, "model": model}
