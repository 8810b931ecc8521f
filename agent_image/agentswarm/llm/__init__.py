"""Support shared by the handlers that call language models: usage accounting, metrics, retries, tools.

* :mod:`agentswarm.llm.usage`: token/request counts of a task, carried in checkpoints, results and
  ``usage`` events, and recorded in the process's Prometheus counters.
* :mod:`agentswarm.llm.metrics`: those counters (``agentswarm_llm_*``) and their optional exporter.
* :mod:`agentswarm.llm.retry`: the retry policy of model HTTP calls (429/5xx, ``Retry-After``).
* :mod:`agentswarm.llm.tools`: the operator's registry of functions a model may call.
* :mod:`agentswarm.llm.events`: coalescing of streamed text into ``token`` events.
* :mod:`agentswarm.llm.chat_config`, :mod:`agentswarm.llm.chat_wire`, :mod:`agentswarm.llm.chat_client`:
  the OpenAI-compatible endpoint's configuration, wire format and retried calls (``handlers.openai_chat``).
* :mod:`agentswarm.llm.agent_policy`, :mod:`agentswarm.llm.journal`, :mod:`agentswarm.llm.durable_run`:
  which pydantic-ai agents may run, a run's checkpointed state and its replaying run loop
  (``handlers.pydantic_ai``).
"""
