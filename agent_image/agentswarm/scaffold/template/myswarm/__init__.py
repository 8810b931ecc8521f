"""Your agents. The handlers are in :mod:`myswarm.handlers`; rename the package freely (the handler names in
the stack files, the Dockerfile's COPY and pyproject.toml follow it)."""
