"""Entry point of the agentswarm component package: serves :mod:`components.provider` to the engine."""

from components.provider import serve

if __name__ == "__main__":
    serve()
