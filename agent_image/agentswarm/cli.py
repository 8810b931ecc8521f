"""The ``agentswarm`` console script: one entry point for every role (see docs/runtime-contract.md).

* ``agentswarm coordinator`` / ``agentswarm agent``: the two pod roles, configured by ``AGENTSWARM_*``.
* ``agentswarm probe --max-age-seconds N [--ready]``: the agents' exec liveness (and readiness) probe.
* ``agentswarm submit`` / ``watch`` / ``cancel`` / ``answer``: websocket client with reconnect, resume and
  progress (in ``agentswarm.cli_client``, re-exported here).
* ``agentswarm local``: the whole swarm as local processes (see docs/local.md).
* ``agentswarm init [DIR]``: a project of your own agents (see docs/your-agents.md).

Exit codes: 0 success, 1 a task failed (dead-lettered) or a probe failed, 2 usage/configuration error,
130 interrupted. This module owns the argument parser, the server roles and ``main``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentswarm import defaults, scaffold
from agentswarm.broker.types import DEFAULT_PRIORITY, PRIORITIES
from agentswarm.cli_client import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_client_options,
    cmd_answer,
    cmd_cancel,
    cmd_submit,
    cmd_watch,
)

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "cmd_agent",
    "cmd_answer",
    "cmd_cancel",
    "cmd_coordinator",
    "cmd_local",
    "cmd_probe",
    "cmd_submit",
    "cmd_watch",
    "main",
]


def _setup_logging(verbose: bool, interactive: bool) -> None:
    # Client commands keep quiet below WARNING: the progress bar already shows reconnects.
    default = "DEBUG" if verbose else ("WARNING" if interactive else "INFO")
    level = os.environ.get("AGENTSWARM_LOG_LEVEL", default).upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _load_settings() -> Any:
    from agentswarm.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"agentswarm: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _run_maybe_async(value: Any) -> Any:
    if inspect.isawaitable(value):

        async def _await() -> Any:
            return await value

        return asyncio.run(_await())
    return value


# --- roles -------------------------------------------------------------------------------------------


def cmd_coordinator(args: argparse.Namespace) -> int:
    from agentswarm import coordinator

    settings = _load_settings()
    try:
        asyncio.run(coordinator.run(settings))
    except ValueError as exc:  # e.g. no API token
        print(f"agentswarm coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    from agentswarm import agent  # type: ignore[attr-defined,unused-ignore]

    settings = _load_settings()
    result = _run_maybe_async(agent.run(settings))
    return int(result) if isinstance(result, int) else EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from agentswarm import agent  # type: ignore[attr-defined,unused-ignore]

    result = _run_maybe_async(agent.probe(args.max_age_seconds, ready=args.ready))
    if isinstance(result, bool):
        return EXIT_OK if result else EXIT_FAILED
    return int(result) if isinstance(result, int) else EXIT_OK


def cmd_local(args: argparse.Namespace) -> int:
    from agentswarm.local import LocalOptions, run_local

    # The sub-command's options are named after LocalOptions' fields.
    names = {f.name for f in dataclasses.fields(LocalOptions)}
    opts = LocalOptions(**{k: v for k, v in vars(args).items() if k in names})
    return run_local(opts)


# --- parser ------------------------------------------------------------------------------------------


#: Settings only one role reads; the others are read by both (see docs/runtime-contract.md).
_ONLY = {
    "coordinator": {"port", "host", "api_token", "api_token_file", "shutdown_drain_seconds"},
    "agent": {
        "agent_id",
        "checkpoint_dir",
        "checkpoint_backend",
        "checkpoint_keep",
        "broker_state_dir",
        "handler",
        "heartbeat_interval_seconds",
        "shutdown_grace_seconds",
        "keepalive_interval_ms",
        "retry_backoff_ms",
        "claim_block_ms",
        "concurrency",
        "rate_limits",
    },
}


def _settings_help(role: str) -> str:
    """The ``AGENTSWARM_*`` variables ``role`` reads, with defaults: the epilog of its ``--help``."""
    from agentswarm.settings import ENV_PREFIX, Settings

    other = set().union(*(names for r, names in _ONLY.items() if r != role))
    lines = [f"{role} is configured by environment variables (docs/runtime-contract.md):", ""]
    for name, field in Settings.model_fields.items():
        if name in other:
            continue
        default = "" if field.default is None else f" (default {field.default})"
        lines.append(f"  {ENV_PREFIX}{name.upper()}")
        lines.append(f"      {field.description}{default}")
    lines.append("  AGENTSWARM_LOG_LEVEL")
    lines.append("      Python logging level (default INFO)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentswarm", description="Run and use an agentswarm.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for role, summary in (
        ("coordinator", "run the coordinator (websocket API, /healthz, /readyz, /metrics)"),
        ("agent", "run one agent worker (identity AGENTSWARM_AGENT_ID)"),
    ):
        sub.add_parser(
            role,
            help=summary,
            description=summary + ". Takes no options.",
            epilog=_settings_help(role),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    probe = sub.add_parser("probe", help="agent exec liveness probe: exit 0 while the heartbeat is fresh")
    probe.add_argument("--max-age-seconds", type=float, default=30.0)
    probe.add_argument(
        "--ready",
        action="store_true",
        help="readiness: also require that the agent's claims reach the broker (its .ready file)",
    )

    submit = sub.add_parser("submit", help="submit tasks over the websocket API")
    add_client_options(submit)
    submit.add_argument("--payload", action="append", help="task payload as a JSON object (repeatable)")
    submit.add_argument("--file", help="JSON lines file of tasks or payloads ('-' = stdin)")
    submit.add_argument("--count", type=int, default=1, help="submit each task this many times")
    submit.add_argument(
        "--id", dest="task_id", help="task id for a single task (makes the submit idempotent)"
    )
    submit.add_argument(
        "--priority",
        choices=PRIORITIES,
        default=DEFAULT_PRIORITY,
        help="priority class of the tasks (a --file line may name its own); default %(default)s",
    )
    submit.add_argument(
        "--watch", action=argparse.BooleanOptionalAction, default=True, help="follow the tasks to the end"
    )

    watch = sub.add_parser("watch", help="follow tasks' events and results, resuming across reconnects")
    add_client_options(watch)
    watch.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    watch.add_argument("--after", help="event id already seen (resume; only with one task, or --all)")
    watch.add_argument(
        "--all",
        action="store_true",
        help="follow the whole swarm instead: task state changes and agent status (until Ctrl-C)",
    )
    watch.add_argument("--limit", type=int, help="with --all: stop after this many entries")
    watch.add_argument(
        "--tree",
        action="store_true",
        help="also follow every task spawned below these, with one progress line per tree level",
    )

    cancel = sub.add_parser("cancel", help="cancel tasks (and every task spawned below them)")
    add_client_options(cancel)
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID")

    answer = sub.add_parser("answer", help="answer the question a task asked (ctx.ask) with a JSON value")
    add_client_options(answer, output=False)
    answer.add_argument("task_id", metavar="TASK_ID")
    answer.add_argument(
        "--json", required=True, help="the answer, a JSON value (e.g. '\"yes\"' or '{\"ok\": 1}')"
    )

    local = sub.add_parser("local", help="run a whole swarm as local processes (see docs/local.md)")
    local.add_argument(
        "--agents", type=int, default=defaults.LOCAL_AGENTS, help="agent processes (default %(default)s)"
    )
    local.add_argument(
        "--broker", choices=("nats", "redis"), default=defaults.LOCAL_BROKER, help="queue backend"
    )
    local.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    local.add_argument("--handler", help="module:function of the task handler")
    local.add_argument(
        "--state-dir", type=Path, default=defaults.LOCAL_STATE_DIR, help="broker data, checkpoints, logs"
    )
    local.add_argument("--host", default=defaults.LOCAL_HOST, help="coordinator bind address")
    local.add_argument(
        "--port",
        type=int,
        default=defaults.DEFAULT_PORT,
        help="coordinator port (0 or busy = pick a free one)",
    )
    local.add_argument("--token", help="API token (default: generated once, kept in the state dir)")
    local.add_argument(
        "--demo", action="store_true", help="run a planner -> workers -> reducer pipeline and exit"
    )
    local.add_argument("--demo-tasks", type=int, default=defaults.DEMO_TASKS, help="workers in the demo")
    local.add_argument("--demo-steps", type=int, default=defaults.DEMO_STEPS, help="steps per demo worker")
    local.add_argument("--demo-delay", type=float, default=defaults.DEMO_DELAY, help="seconds per demo step")
    local.add_argument(
        "--open",
        action="store_true",
        help="open the dashboard in a web browser (with --demo the swarm stays up after it until Ctrl-C)",
    )
    _add_autoscale_options(local)
    scaffold.add_parser(sub)
    return parser


def _add_autoscale_options(local: argparse.ArgumentParser) -> None:
    from agentswarm.local import autoscale

    local.add_argument(
        "--autoscale",
        metavar="MIN..MAX",
        help="agents follow the queue's backlog within MIN..MAX, e.g. 0..8 (replaces --agents)",
    )
    local.add_argument(
        "--autoscale-target",
        type=int,
        default=autoscale.DEFAULT_TARGET,
        help="outstanding tasks per agent (default %(default)s)",
    )
    local.add_argument(
        "--autoscale-activation",
        type=int,
        default=autoscale.DEFAULT_ACTIVATION,
        help="backlog above which agents start from zero (default %(default)s)",
    )
    local.add_argument(
        "--autoscale-interval",
        type=float,
        default=autoscale.DEFAULT_INTERVAL,
        help="seconds between backlog readings (default %(default)s)",
    )
    local.add_argument(
        "--autoscale-cooldown",
        type=float,
        default=autoscale.DEFAULT_COOLDOWN,
        help="idle seconds before the last agents stop (default %(default)s)",
    )
    local.add_argument(
        "--autoscale-stabilization",
        type=float,
        default=autoscale.DEFAULT_STABILIZATION,
        help="scale-down stabilisation window in seconds (default %(default)s)",
    )


COMMANDS = {
    "coordinator": cmd_coordinator,
    "agent": cmd_agent,
    "probe": cmd_probe,
    "submit": cmd_submit,
    "watch": cmd_watch,
    "cancel": cmd_cancel,
    "answer": cmd_answer,
    "local": cmd_local,
    "init": scaffold.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, interactive=args.command in ("submit", "watch", "local"))
    if args.command == "watch" and args.all and args.task_ids:
        print("agentswarm watch: give task ids or --all, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "watch" and not args.all and not args.task_ids:
        print("agentswarm watch: give task ids to follow, or --all for the whole swarm", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("watch",) and args.after and not args.all and len(args.task_ids) != 1:
        print("agentswarm watch: --after needs exactly one task id", file=sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
