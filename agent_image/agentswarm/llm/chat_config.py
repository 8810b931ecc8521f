"""Where the OpenAI-compatible chat handler sends its model calls: endpoint, key, timeout, retries, tools.

:class:`LLMConfig` reads and checks the ``AGENTSWARM_LLM_*`` environment and opens the HTTP client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from agentswarm.llm.errors import LLMConfigError
from agentswarm.llm.prices import PriceTable
from agentswarm.llm.retry import DEFAULT_MAX_RETRIES, RetryPolicy

DEFAULT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class LLMConfig:
    """The endpoint and policies, from ``AGENTSWARM_LLM_*``."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tools_ref: str | None = None
    prices: PriceTable | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMConfig:
        env = os.environ if environ is None else environ
        base = env.get("AGENTSWARM_LLM_BASE_URL", "").rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise LLMConfigError(f"AGENTSWARM_LLM_BASE_URL={base!r}: set it to http(s)://HOST[:PORT]/v1")
        model = env.get("AGENTSWARM_LLM_MODEL", "")
        if not model:
            raise LLMConfigError("AGENTSWARM_LLM_MODEL is not set: name the model to call")
        raw_timeout = env.get("AGENTSWARM_LLM_TIMEOUT_SECONDS", str(DEFAULT_TIMEOUT_SECONDS))
        try:
            timeout = float(raw_timeout)
            if not timeout > 0:
                raise ValueError
        except ValueError:
            raise LLMConfigError(
                f"AGENTSWARM_LLM_TIMEOUT_SECONDS={raw_timeout!r}: must be a number of seconds > 0"
            ) from None
        raw_retries = env.get("AGENTSWARM_LLM_MAX_RETRIES", str(DEFAULT_MAX_RETRIES))
        if not raw_retries.isdigit() or int(raw_retries) > 100:
            raise LLMConfigError(f"AGENTSWARM_LLM_MAX_RETRIES={raw_retries!r}: must be an integer 0-100")
        return cls(
            base_url=base,
            model=model,
            api_key=env.get("AGENTSWARM_LLM_API_KEY") or None,
            timeout=timeout,
            retry=RetryPolicy(max_retries=int(raw_retries)),
            tools_ref=env.get("AGENTSWARM_LLM_TOOLS") or None,
            prices=PriceTable.from_env(env),
        )

    def http_client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
