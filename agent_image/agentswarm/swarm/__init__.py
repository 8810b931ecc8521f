"""Swarm primitives on top of the queue: task trees (spawn, gather, parking), shared context, agent memory.

* :mod:`agentswarm.swarm.store`: the contract (:class:`SwarmStore`) and its types; ``redis_store`` and
  ``nats_store`` implement it next to the two queue backends.
* :mod:`agentswarm.swarm.runtime`: what an agent adds to the handler's context (``ctx.spawn``,
  ``ctx.gather``, ``ctx.shared``, ``ctx.memory``) and the :class:`Parked` signal.
* :mod:`agentswarm.swarm.shared`: ``ctx.shared``; :mod:`agentswarm.swarm.memory`: ``ctx.memory``.
"""

from agentswarm.swarm.shared import InvalidKey, ValueTooLarge, VersionConflict
from agentswarm.swarm.store import ChildOutcome, Node, NotAChild, SwarmError, TreeTooDeep, Versioned, child_id

__all__ = [
    "ChildOutcome",
    "InvalidKey",
    "Node",
    "NotAChild",
    "SwarmError",
    "TreeTooDeep",
    "ValueTooLarge",
    "VersionConflict",
    "Versioned",
    "child_id",
]
