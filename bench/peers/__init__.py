"""The same work (a no-op task, and a multi-step task for the recovery benchmark) for every system.

Each module here is what one system's worker process imports. Settings come from ``BENCH_*`` environment
variables set by the orchestrator, so a worker needs no command-line configuration beyond its CLI.
"""
