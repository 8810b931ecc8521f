"""Client-side commands of the console script: ``submit``, ``watch``, ``cancel`` and ``answer``.

Owns their websocket-client options, reading tasks from flags or JSON lines, and the progress and summary
output; the exit codes shared by every command are defined here too, so ``cli`` and this module agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agentswarm import defaults
from agentswarm.backoff import Backoff

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    failed = [w for w in watches.values() if w.result is not None and w.result.status != "done"]
    return EXIT_FAILED if failed else EXIT_OK


def _tree_view(task_ids: list[str]) -> Any:
    from agentswarm.swarm.progress import TreeProgress

    return TreeProgress(task_ids)


def cmd_submit(args: argparse.Namespace) -> int:
    from agentswarm.client import ClientError

    tasks = _read_tasks(args)

    async def main() -> int:
        client = _client(args)
        ids: list[str] = await client.submit(tasks, priority=args.priority)
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


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel tasks and their trees; one ``<id> <outcome>`` line each. Exit 1 if an id is unknown."""
    from agentswarm.client import ClientError

    client = _client(args)
    try:
        outcomes = asyncio.run(client.cancel(list(args.task_ids)))
    except ClientError as exc:
        print(f"agentswarm cancel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    words = {"cancelled": "cancelled", "finished": "already finished (nothing to cancel)"}
    for task_id, outcome in outcomes.items():
        print(f"{task_id} {words.get(outcome, 'not found')}")
    return EXIT_FAILED if "not_found" in outcomes.values() else EXIT_OK


def cmd_answer(args: argparse.Namespace) -> int:
    """Answer the question a task waits on (its ``ctx.ask``) with a JSON value."""
    from agentswarm.client import ClientError

    try:
        value = json.loads(args.json)
    except ValueError as exc:
        print(f"agentswarm answer: --json is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = _client(args)
    try:
        n = asyncio.run(client.answer(args.task_id, value))
    except ClientError as exc:
        print(f"agentswarm answer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.task_id} answered (question {n}); it resumes on the next free agent")
    return EXIT_OK


def add_client_options(p: argparse.ArgumentParser, *, output: bool = True) -> None:
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
    if not output:  # a command without results to show (and its own --json, the value it sends)
        return
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print each result frame as one JSON line")
    p.add_argument(
        "--events",
        action="store_true",
        help="print each event frame as one JSON line (with its event_id, for --after)",
    )
