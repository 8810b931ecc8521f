"""A small research swarm written with pydantic-ai: a planner, parallel researchers, a writer.

See README.md. ``python -m research_swarm "question"`` (with ``examples/`` on ``PYTHONPATH``) starts
``agentswarm local``, runs the swarm and prints the report.
"""
