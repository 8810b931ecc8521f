"""agentswarm runtime: a coordinator and agents that share a queue, checkpoint, and survive SIGKILL."""

__version__ = "0.1.0"
