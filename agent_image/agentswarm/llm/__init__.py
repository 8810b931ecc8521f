"""Support shared by the handlers that call language models: usage accounting, metrics, retries, tools.

* :mod:`agentswarm.llm.usage`: token/request counts of a task, carried in checkpoints, results and
  ``usage`` events, and recorded in the process's Prometheus counters.
* :mod:`agentswarm.llm.metrics`: those counters (``agentswarm_llm_*``) and their optional exporter.
* :mod:`agentswarm.llm.retry`: the retry policy of model HTTP calls (429/5xx, ``Retry-After``).
* :mod:`agentswarm.llm.tools`: the operator's registry of functions a model may call.
* :mod:`agentswarm.llm.events`: coalescing of streamed text into ``token`` events.
"""
