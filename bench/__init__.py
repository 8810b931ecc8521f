"""agentswarm benchmarks against the queues people would pick instead (issue 6).

Run everything with ``python -m bench`` (``--quick`` for a smoke run); see bench/README.md.
"""
