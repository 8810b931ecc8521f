"""agentswarm benchmarks against the queues people would pick instead.

Run everything with ``python -m bench`` (``--quick`` for a smoke run); see bench/README.md.
"""
