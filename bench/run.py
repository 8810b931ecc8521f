"""Orchestrator: ``python -m bench [--quick] [--only SECTION ...]``.

Runs the sections in order (ceiling, queues, recovery, wscap, pulumi), each with its own private servers on
free loopback ports, bounded in task count and time. Writes ``bench/results.json`` (raw numbers),
``bench/RESULTS.md`` and ``bench/*.png``. A failing section is recorded in the report; the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import git_state, machine, uptime_line, versions

HERE = Path(__file__).resolve().parent
SECTIONS = ("ceiling", "queues", "recovery", "wscap", "pulumi", "fanout")
log = logging.getLogger("bench")


def _profile(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "agent_counts": (1, 4),
            "tasks": 200,
            "repeats": 1,
            "idle_samples": 20,
            "idle_budget_s": 5.0,
            "load_rate": 100.0,
            "load_seconds": 1.5,
            "ceiling_requests": 2000,
            "ceiling_repeats": 1,
            "recovery": {
                "trials": 1,
                "steps": 10,
                "kill_after": 5,
                "celery_bound_s": 20.0,
                "celery_trials": 1,
                "bound_s": 30.0,
            },
            "ws_connections": 1000,
            "ws_repeats": 1,
            "pulumi_repeats": 1,
            "pulumi_replicas": (5, 50, 500, 5000),
            "fanout": {"children": 200, "repeats": 1},
        }
    return {
        "agent_counts": (1, 2, 4, 8),
        "tasks": 1500,
        "repeats": 3,
        "idle_samples": 200,
        "idle_budget_s": 15.0,
        "load_rate": 100.0,
        "load_seconds": 4.0,
        "ceiling_requests": 5000,
        "ceiling_repeats": 3,
        "recovery": {
            "trials": 3,
            "steps": 20,
            "kill_after": 10,
            "celery_bound_s": 130.0,
            "celery_trials": 2,
            "bound_s": 45.0,
        },
        "ws_connections": 10000,
        "ws_repeats": 2,
        "pulumi_repeats": 5,
        "pulumi_replicas": (5, 50, 500, 5000),
        "fanout": {"children": 1000, "repeats": 3},
    }


def _section(name: str, prof: dict[str, Any], workdir: Path, systems: tuple[str, ...]) -> Any:
    if name == "ceiling":
        from bench.ceiling import run_ceiling

        return run_ceiling(workdir, prof["agent_counts"], prof["ceiling_requests"], prof["ceiling_repeats"])
    if name == "queues":
        from bench.queues import QueueConfig, run_queues

        cfg = QueueConfig(
            systems=systems,
            agent_counts=prof["agent_counts"],
            tasks=prof["tasks"],
            repeats=prof["repeats"],
            idle_samples=prof["idle_samples"],
            idle_budget_s=prof["idle_budget_s"],
            load_rate=prof["load_rate"],
            load_seconds=prof["load_seconds"],
        )
        res = asyncio.run(run_queues(cfg, workdir))
        return {"config": {k: v for k, v in cfg.__dict__.items()}, **res.__dict__}
    if name == "recovery":
        from bench.recovery import RecoveryConfig, run_recovery

        return asyncio.run(run_recovery(RecoveryConfig(**prof["recovery"]), workdir))
    if name == "wscap":
        from bench.wscap import run_wscap

        return run_wscap(workdir, prof["ws_connections"], prof["ws_repeats"])
    if name == "pulumi":
        from bench.pulumi_eval import run_pulumi_eval

        return run_pulumi_eval(prof["pulumi_repeats"], prof["pulumi_replicas"])
    if name == "fanout":
        from bench.fanout import FanoutConfig, run_fanout

        return asyncio.run(run_fanout(FanoutConfig(**prof["fanout"]), workdir))
    raise ValueError(name)


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from bench.systems import SYSTEMS

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, one repeat")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where RESULTS.md, results.json and the PNGs go (default bench/, --quick: bench/quick/)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-render RESULTS.md/PNGs from results.json"
    )
    args = parser.parse_args(argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every section's finally-blocks stop its servers and workers
    # (they run in their own sessions and would otherwise outlive us).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.out is None:
        args.out = HERE / "quick" if args.quick else HERE
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"

    from bench.report import write_report

    if args.report_only:
        write_report(json.loads(results_path.read_text()), args.out)
        return 0

    prof = _profile(args.quick)
    sections = tuple(args.only or SECTIONS)
    results: dict[str, Any] = {
        "command": "python -m bench"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(sections)}" if args.only else ""),
        "quick": args.quick,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "uptime_start": uptime_line(),
        "profile": prof,
        "sections": {},
        "section_seconds": {},
        "section_errors": {},
    }
    previous: dict[str, Any] = {}
    if args.only and results_path.exists():  # merge into the previous full results
        previous = json.loads(results_path.read_text())
        results["sections"] = previous.get("sections", {})
        results["section_seconds"] = previous.get("section_seconds", {})
        results["section_git"] = previous.get("section_git", {})
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentswarm-bench-") as tmp:
        for name in sections:
            log.info("=== %s (load %s)", name, os.getloadavg())
            t0 = time.monotonic()
            results.setdefault("section_git", {})[name] = (
                git_state()
            )  # the runtime may change between sections
            try:
                results["sections"][name] = _section(name, prof, Path(tmp) / name, tuple(args.systems))
            except Exception as exc:
                log.exception("section %s failed", name)
                results["section_errors"][name] = (
                    f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
                )
            results["section_seconds"][name] = time.monotonic() - t0
            results_path.write_text(json.dumps(results, indent=1, default=str))
    results["uptime_end"] = uptime_line()
    results["total_seconds"] = time.monotonic() - t_all
    results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if previous.get("finished"):
        # The header describes the run that produced most sections; the re-run ones carry their own
        # section_git (and the fan-out section its own times and load).
        header = ("command", "started", "finished", "total_seconds", "git", "uptime_start", "uptime_end")
        for key in (*header, "machine", "versions", "quick", "profile"):
            if key in previous:
                results[key] = previous[key]
    results_path.write_text(json.dumps(results, indent=1, default=str))
    write_report(results, args.out)
    log.info("done in %.0fs: %s", results["total_seconds"], args.out / "RESULTS.md")
    return 0
