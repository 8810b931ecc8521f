"""The ``agentswarm`` console script: one entry point for every role (see docs/runtime-contract.md).

* ``agentswarm coordinator`` / ``agentswarm agent``: the two pod roles, configured by ``AGENTSWARM_*``.
* ``agentswarm probe --max-age-seconds N [--ready]``: the agents' exec liveness (and readiness) probe.
* ``agentswarm submit`` / ``agentswarm watch``: websocket client with reconnect, resume and progress.
* ``agentswarm local``: the whole swarm as local processes (see docs/local.md).
* ``agentswarm init [DIR]``: a project of your own agents (see docs/your-agents.md).

Exit codes: 0 success, 1 a task failed (dead-lettered) or a probe failed, 2 usage/configuration error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentswarm import defaults, scaffold
from agentswarm.backoff import Backoff

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


# --- client ------------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from agentswarm.client import SwarmClient

    return SwarmClient(
        args.url,
        args.token,
        backoff=Backoff(initial=args.backoff_initial, maximum=args.backoff_max),
        max_retries=args.max_retries,
        ca_file=args.ca_file or None,
    )


def _read_tasks(args: argparse.Namespace) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    for raw in args.payload or []:
        tasks.append({"payload": _json_object(raw, "--payload")})
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                obj = _json_object(line, f"{args.file}:{n}")
                # A line is either a task {"task_id":..., "payload": {...}} or just a payload.
                tasks.append(obj if "payload" in obj else {"payload": obj})
    if args.count > 1:
        tasks = [t for t in tasks for _ in range(args.count)]
    if args.task_id:
        if len(tasks) != 1:
            raise SystemExit("agentswarm submit: --id needs exactly one task")
        tasks[0] = {**tasks[0], "task_id": args.task_id}
    if not tasks:
        raise SystemExit("agentswarm submit: nothing to submit; give --payload JSON or --file FILE")
    return tasks


def _json_object(raw: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"agentswarm submit: {where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"agentswarm submit: {where} must be a JSON object")
    return value


async def _watch_and_report(client: Any, task_ids: list[str], args: argparse.Namespace) -> int:
    from agentswarm.client import ProgressBar, summary_table

    tree = bool(getattr(args, "tree", False))
    bar: Any = None
    if not args.quiet:
        bar = _tree_view(task_ids) if tree else ProgressBar(task_ids)
    if bar is not None and not tree:
        client.on_reconnect = bar.on_reconnect
        bar.render(force=True)
        bar.start_ticker()

    def on_result(frame: Any) -> None:
        if bar is not None:
            bar.on_result(frame)
        if args.json:
            print(frame.dump(), flush=True)

    def on_event(frame: Any) -> None:
        if bar is not None:
            bar.on_event(frame)
        if args.events:  # one JSON line per event, with the event id a later --after resumes from
            print(frame.dump(), flush=True)

    try:
        watches = await client.watch(
            task_ids,
            after={tid: args.after for tid in task_ids} if getattr(args, "after", None) else None,
            on_event=on_event,
            on_result=on_result,
            follow_spawned=tree,
        )
    finally:
        if bar is not None:
            bar.close()
    if tree:  # the table lists the given tasks; their descendants are summed up per level above
        watches = {tid: watches[tid] for tid in task_ids}
    if not (args.json or args.events):  # stdout stays JSON lines when they were asked for
        print(summary_table(watches))
    dead = [w for w in watches.values() if w.result is not None and w.result.status == "dead"]
    return EXIT_FAILED if dead else EXIT_OK


def _tree_view(task_ids: list[str]) -> Any:
    from agentswarm.swarm.progress import TreeProgress

    return TreeProgress(task_ids)


def cmd_submit(args: argparse.Namespace) -> int:
    from agentswarm.client import ClientError

    tasks = _read_tasks(args)

    async def main() -> int:
        client = _client(args)
        ids: list[str] = await client.submit(tasks)
        if not args.watch:
            for tid in ids:
                print(tid)
            return EXIT_OK
        print(f"submitted {len(ids)} task(s)", file=sys.stderr)
        return await _watch_and_report(client, ids, args)

    try:
        return asyncio.run(main())
    except ClientError as exc:
        print(f"agentswarm submit: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def _watch_swarm(client: Any, args: argparse.Namespace) -> int:
    from agentswarm.client import describe_swarm_entry, watch_swarm

    def on_frame(frame: Any) -> None:
        print(frame.dump() if args.json or args.events else describe_swarm_entry(frame.data), flush=True)

    await watch_swarm(client, on_frame, after=args.after, limit=args.limit)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from agentswarm.client import ClientError

    async def main() -> int:
        return await _watch_and_report(_client(args), list(args.task_ids), args)

    try:
        if args.all:
            return asyncio.run(_watch_swarm(_client(args), args))
        return asyncio.run(main())
    except ClientError as exc:
        print(f"agentswarm watch: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_local(args: argparse.Namespace) -> int:
    from agentswarm.local import LocalOptions, run_local

    # The sub-command's options are named after LocalOptions' fields.
    names = {f.name for f in dataclasses.fields(LocalOptions)}
    opts = LocalOptions(**{k: v for k, v in vars(args).items() if k in names})
    return run_local(opts)


# --- parser ------------------------------------------------------------------------------------------


def _add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("AGENTSWARM_URL", defaults.DEFAULT_URL),
        help="coordinator websocket URL, wss:// behind a load balancer (env AGENTSWARM_URL; default "
        "%(default)s)",
    )
    p.add_argument(
        "--ca-file",
        default=os.environ.get("AGENTSWARM_CA_FILE", ""),
        help="PEM bundle of the CAs to trust for a wss:// URL instead of the system store (env "
        "AGENTSWARM_CA_FILE); certificates are always verified",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AGENTSWARM_API_TOKEN", ""),
        help="API token (env AGENTSWARM_API_TOKEN)",
    )
    p.add_argument(
        "--max-retries", type=int, default=None, help="consecutive failed connects before giving up"
    )
    p.add_argument(
        "--backoff-initial", type=float, default=Backoff.initial, help="first reconnect delay, seconds"
    )
    p.add_argument(
        "--backoff-max", type=float, default=Backoff.maximum, help="largest reconnect delay, seconds"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print each result frame as one JSON line")
    p.add_argument(
        "--events",
        action="store_true",
        help="print each event frame as one JSON line (with its event_id, for --after)",
    )


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
    _add_client_options(submit)
    submit.add_argument("--payload", action="append", help="task payload as a JSON object (repeatable)")
    submit.add_argument("--file", help="JSON lines file of tasks or payloads ('-' = stdin)")
    submit.add_argument("--count", type=int, default=1, help="submit each task this many times")
    submit.add_argument(
        "--id", dest="task_id", help="task id for a single task (makes the submit idempotent)"
    )
    submit.add_argument(
        "--watch", action=argparse.BooleanOptionalAction, default=True, help="follow the tasks to the end"
    )

    watch = sub.add_parser("watch", help="follow tasks' events and results, resuming across reconnects")
    _add_client_options(watch)
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
