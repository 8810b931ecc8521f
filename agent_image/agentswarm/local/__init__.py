"""``agentswarm local``: the whole swarm as supervised local processes, no cluster.

Layout of the state directory (default ``./.agentswarm``)::

    token            the API token (generated once, mode 0600)
    local.json       where the coordinator listens, the token, and the PIDs of every child
    nats/ redis/     the embedded broker's data (JetStream file store / Redis AOF)
    agents/agent-N/  each agent's checkpoint directory (its "PVC")
    logs/*.log       each child's stdout and stderr
    demo.json        the root task of the last demo pipeline (a second --demo run resumes it)
    lock             held while a supervisor runs, so two cannot share one state dir

Why processes and not tasks in one event loop: a local swarm must behave like the cluster, where an
agent can die at any moment (SIGKILL) and come back under the same identity to resume from its
checkpoint. Every child gets its own process group, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops agents first (they checkpoint), the coordinator next and the broker
last, and finally SIGKILLs any group that is still alive. Children also get ``PR_SET_PDEATHSIG`` so
that even a SIGKILLed supervisor leaves nothing behind.

Modules: :mod:`~agentswarm.local.options` (the command line), :mod:`~agentswarm.local.broker` (the
embedded broker), :mod:`~agentswarm.local.swarm` (state dir and children),
:mod:`~agentswarm.local.supervisor` (restarts), :mod:`~agentswarm.local.demo` and
:mod:`~agentswarm.local.run` (the entry point).
"""

from agentswarm.local.options import LocalError, LocalOptions
from agentswarm.local.run import run_local
from agentswarm.local.swarm import LocalSwarm

__all__ = ["LocalError", "LocalOptions", "LocalSwarm", "run_local"]
