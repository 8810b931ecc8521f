"""Render ``results.json`` into RESULTS.md (headline table first) and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.systems import LABELS, SYSTEMS

PEERS = ("arq", "celery", "taskiq")
OURS = ("agentswarm-redis", "agentswarm-nats")


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**missed**")


def _num(x: Any, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _sum(s: dict[str, Any] | None, digits: int = 0, unit: str = "") -> str:
    if not s or not s.get("n"):
        return "–"
    if s["n"] == 1:
        return f"{_num(s['median'], digits)}{unit}"
    return f"{_num(s['median'], digits)}{unit} ({_num(s['min'], digits)}–{_num(s['max'], digits)})"


def _med(s: dict[str, Any] | None) -> float | None:
    if not s or not s.get("n"):
        return None
    return float(s["median"])


def _tp(results: dict[str, Any], system: str, agents: int) -> dict[str, Any] | None:
    q = results["sections"].get("queues") or {}
    return (q.get("throughput", {}).get(system) or {}).get(str(agents)) or (
        q.get("throughput", {}).get(system) or {}
    ).get(agents)


def _ceiling(results: dict[str, Any], agents: int) -> tuple[float | None, float | None]:
    c = results["sections"].get("ceiling") or {}
    rt = (c.get("round_trip") or {}).get(str(agents)) or (c.get("round_trip") or {}).get(agents)
    return _med(rt), _med(c.get("server"))


# --------------------------------------------------------------------------------------------- goals
def goals(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, met) rows for the headline table."""
    rows: list[tuple[str, str, str, str]] = []
    sec = results["sections"]
    agents = 4
    if "queues" in sec:
        peer_best = max(((_med(_tp(results, p, agents)) or 0.0, p) for p in PEERS), default=(0.0, ""))
        for ours in OURS:
            v = _med(_tp(results, ours, agents))
            if v is None:
                continue
            ratios = ", ".join(
                f"{v / m:.2f}× {LABELS[p]}" for p in PEERS if (m := _med(_tp(results, p, agents)))
            )
            rows.append(
                (
                    f"Throughput, {LABELS[ours]}, 4 agents: ahead of every peer",
                    "> best peer",
                    f"{_num(v)} tasks/s vs best peer {LABELS.get(peer_best[1], '–')} {_num(peer_best[0])} ({ratios})",
                    _ok(v > peer_best[0] if peer_best[0] else None),
                )
            )
        v = _med(_tp(results, "agentswarm-redis", agents))
        rt, srv = _ceiling(results, agents)
        if v is not None and rt:
            rows.append(
                (
                    "Throughput, agentswarm (Redis), 4 agents: ≥ ¼ of the Redis ceiling (same command mix, 4 connections)",
                    "≥ 0.25",
                    f"{v / rt:.2f} of {_num(rt)} tasks/s",
                    _ok(v / rt >= 0.25),
                )
            )
        if v is not None and srv:
            rows.append(
                (
                    "… and of the server-bound ceiling (50 connections, pipeline 16)",
                    "≥ 0.25",
                    f"{v / srv:.2f} of {_num(srv)} tasks/s",
                    _ok(v / srv >= 0.25),
                )
            )
        lat = sec["queues"].get("latency", {})
        for ours in OURS:
            idle = (lat.get(ours) or {}).get("idle") or {}
            if idle.get("p99_ms") is not None:
                rows.append(
                    (
                        f"Dispatch latency p99, idle, {LABELS[ours]}",
                        "< 5 ms",
                        f"{idle['p99_ms']:.1f} ms (p50 {idle['p50_ms']:.1f} ms, {idle['samples']} tasks)",
                        _ok(idle["p99_ms"] < 5.0),
                    )
                )
    if "recovery" in sec:
        rec = sec["recovery"]
        steps = rec["config"]["steps"]
        for scen, data in rec.get("scenarios", {}).items():
            if not scen.startswith("agentswarm"):
                continue
            redone = [t["steps_redone"] for t in data["trials"] if t.get("steps_redone") is not None]
            complete = len(redone) == len(data["trials"]) and redone
            rows.append(
                (
                    f"Recovery after SIGKILL, {scen}: work redone ≤ one checkpoint interval (1 of {steps} steps)",
                    "≤ 1 step",
                    f"max {max(redone) if redone else '–'} step(s) redone over {len(data['trials'])} kills; "
                    f"back in {_sum(data['recovery_s'], 2, ' s')}",
                    _ok(bool(complete) and max(redone) <= 1),
                )
            )
    if "wscap" in sec:
        ws = sec["wscap"]
        co = ws["servers"].get("coordinator") or {}
        bare = ws["servers"].get("bare") or {}
        nodeflate = _med((ws["servers"].get("coordinator-nodeflate") or {}).get("kib_per_connection"))
        extra = (
            f"; coordinator with permessage-deflate off: {nodeflate:.1f} KiB, see FINDINGS.md"
            if nodeflate
            else ""
        )
        held = _med(co.get("held"))
        kib = _med(co.get("kib_per_connection"))
        if held is not None and kib is not None:
            rows.append(
                (
                    f"Websockets: {ws['connections']:,} idle connections on one coordinator process (one core), ≤ 20 KiB each",
                    "10,000 at ≤ 20 KiB",
                    f"{_num(held)} held, {kib:.1f} KiB each (bare websockets server: "
                    f"{_num(_med(bare.get('kib_per_connection')), 1)} KiB{extra})",
                    _ok(held >= 10000 and kib <= 20),
                )
            )
    if "pulumi" in sec:
        p = sec["pulumi"]
        counts = {n: d["resources"] for n, d in p.items()}
        flat = len({c for cs in counts.values() for c in cs}) == 1
        times = [d["seconds"]["median"] for d in p.values()]
        # flatness judged on the fastest of the repeats (least disturbed by the shared machine)
        best = [d["seconds"]["min"] for d in p.values()]
        tflat = max(best) / min(best) < 2.0 if best else False
        rows.append(
            (
                "Pulumi program under mocks, GKE stack, 5 → 5,000 agents: resources and time flat",
                "same count; fastest time within 2×",
                f"{'/'.join(str(c[0]) for c in counts.values())} resources; median {' / '.join(f'{t:.2f}' for t in times)} s, "
                f"fastest {' / '.join(f'{t:.2f}' for t in best)} s",
                _ok(flat and tflat),
            )
        )
    return rows


# --------------------------------------------------------------------------------------------- plots
def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    sec = results["sections"]
    q = sec.get("queues")
    if q and q.get("throughput"):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for system in SYSTEMS:
            data = q["throughput"].get(system)
            if not data:
                continue
            xs = sorted(int(k) for k in data)
            med = [data[str(x)]["median"] if str(x) in data else data[x]["median"] for x in xs]
            lo = [m - (data[str(x)]["min"]) for x, m in zip(xs, med, strict=True)]
            hi = [(data[str(x)]["max"]) - m for x, m in zip(xs, med, strict=True)]
            ax.errorbar(
                xs,
                med,
                yerr=[lo, hi],
                marker="o",
                capsize=3,
                label=LABELS[system],
                linewidth=2.5 if system.startswith("agentswarm") else 1.2,
            )
        c = sec.get("ceiling") or {}
        if c.get("round_trip"):
            xs = sorted(int(k) for k in c["round_trip"])
            ax.plot(
                xs,
                [c["round_trip"][str(x)]["median"] for x in xs],
                "k--",
                label="Redis ceiling (same mix, N conns)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_yscale("log")
        ax.set_xlabel("agents / worker processes")
        ax.set_ylabel("no-op tasks per second (end to end)")
        ax.set_title("Throughput: submit → worker → recorded result (median, min–max)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        made.append("throughput.png")
    if q and q.get("latency"):
        systems = [s for s in SYSTEMS if s in q["latency"]]
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        width = 0.2
        for k, (phase, pct, color) in enumerate(
            [
                ("idle", "p50_ms", "#9ecae1"),
                ("idle", "p99_ms", "#3182bd"),
                ("load", "p50_ms", "#fdae6b"),
                ("load", "p99_ms", "#e6550d"),
            ]
        ):
            vals = [q["latency"][s][phase].get(pct) or float("nan") for s in systems]
            ax.bar(
                [i + (k - 1.5) * width for i in range(len(systems))],
                vals,
                width,
                color=color,
                label=f"{phase} {pct.removesuffix('_ms')}",
            )
        ax.axhline(5.0, color="k", linestyle="--", linewidth=1, label="goal: p99 idle < 5 ms")
        ax.set_xticks(range(len(systems)), [LABELS[s] for s in systems], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("submit → handler start (ms)")
        rate = q["config"]["load_rate"] if "config" in q else "?"
        ax.set_title(f"Dispatch latency, 4 workers (load: {rate:g} tasks/s open loop)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        made.append("latency.png")
    rec = sec.get("recovery")
    if rec and rec.get("scenarios"):
        names = list(rec["scenarios"])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
        med = [rec["scenarios"][n]["recovery_s"]["median"] for n in names]
        bounds = [
            max((t.get("bound_s") or 0) for t in rec["scenarios"][n]["trials"])
            if rec["scenarios"][n]["trials"]
            else 0
            for n in names
        ]
        shown = [m if not math.isnan(m) else b for m, b in zip(med, bounds, strict=True)]
        colors = ["#3182bd" if n.startswith("agentswarm") else "#969696" for n in names]
        hatches = ["" if not math.isnan(m) else "//" for m in med]
        bars = a1.barh(names, shown, color=colors)
        for bar, h in zip(bars, hatches, strict=True):
            bar.set_hatch(h)
        a1.set_xscale("log")
        a1.set_xlabel("SIGKILL → running again, median (s)\nhatched: not back within the bound", fontsize=9)
        a1.invert_yaxis()
        red = [rec["scenarios"][n]["redone_fraction"]["max"] for n in names]
        a2.barh(names, [0 if math.isnan(r) else r * 100 for r in red], color=colors)
        a2.set_xlabel("steps redone, worst of the kills (% of the task)", fontsize=9)
        for i, r in enumerate(red):
            if not math.isnan(r):
                a2.text(r * 100 + 0.5, i, f"{r * 100:.0f} %", va="center", fontsize=8)
        a2.set_yticks(range(len(names)), [""] * len(names))
        a2.invert_yaxis()
        fig.suptitle("Recovery from SIGKILL mid-task")
        fig.tight_layout()
        fig.savefig(out / "recovery.png", dpi=110)
        plt.close(fig)
        made.append("recovery.png")
    ws = sec.get("wscap")
    pl = sec.get("pulumi")
    if ws or pl:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        if ws:
            kinds = [k for k in ("coordinator", "bare", "coordinator-nodeflate") if k in ws["servers"]]
            vals = [ws["servers"][k]["kib_per_connection"]["median"] for k in kinds]
            short = {
                "coordinator": "coordinator",
                "bare": "bare\nwebsockets",
                "coordinator-nodeflate": "coordinator,\nno deflate\n(experiment)",
            }
            axes[0].bar(
                [short[k] for k in kinds], vals, color=["#3182bd", "#969696", "#9ecae1"][: len(kinds)]
            )
            axes[0].axhline(20, color="k", linestyle="--", linewidth=1, label="goal ≤ 20 KiB")
            axes[0].set_ylabel("KiB of server RSS per idle connection")
            axes[0].set_title(f"{ws['connections']:,} idle websockets, one process")
            axes[0].legend(fontsize=8)
        if pl:
            xs = sorted(int(k) for k in pl)
            t = [pl[str(x)]["seconds"]["median"] for x in xs]
            axes[1].plot(xs, t, "o-", color="#3182bd", label="evaluation time (s)")
            axes[1].set_xscale("log")
            axes[1].set_xlabel("agents (agents.replicas)")
            axes[1].set_ylabel("seconds")
            ax2 = axes[1].twinx()
            ax2.plot(xs, [pl[str(x)]["resources"][0] for x in xs], "s--", color="#e6550d", label="resources")
            ax2.set_ylabel("resources registered")
            ax2.set_ylim(0, max(pl[str(x)]["resources"][0] for x in xs) * 1.5)
            axes[1].set_ylim(0, max(t) * 1.5)
            axes[1].set_title("Pulumi program under mocks (GKE stack)")
            h1, l1 = axes[1].get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            axes[1].legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "capacity.png", dpi=110)
        plt.close(fig)
        made.append("capacity.png")
    return made


# --------------------------------------------------------------------------------------------- markdown
def _queues_md(results: dict[str, Any]) -> list[str]:
    q = results["sections"]["queues"]
    counts = [int(k) for k in q["config"]["agent_counts"]]
    lines = ["## 1. Throughput, end to end (no-op task)", ""]
    lines += [
        f"{q['config']['tasks']:,} tasks per run, {q['config']['repeats']} runs per cell after a warm-up; tasks/s = tasks / (first "
        "submit → last result recorded). Median (min–max). Ratio = agentswarm (Redis) / system, same run.",
        "",
        "| system | " + " | ".join(f"{n} agent{'s' if n > 1 else ''}" for n in counts) + " | ratio at 4 |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    ours4 = _med(_tp(results, "agentswarm-redis", 4))
    for s in SYSTEMS:
        if s not in q["throughput"]:
            continue
        v4 = _med(_tp(results, s, 4))
        ratio = f"{ours4 / v4:.2f}×" if ours4 and v4 else "–"
        lines.append(
            f"| {LABELS[s]} | " + " | ".join(_sum(_tp(results, s, n)) for n in counts) + f" | {ratio} |"
        )
    c = results["sections"].get("ceiling")
    if c:
        lines.append(
            "| Redis ceiling, same command mix, N connections (redis-benchmark) | "
            + " | ".join(_sum((c.get("round_trip") or {}).get(str(n))) for n in counts)
            + " | |"
        )
        lines.append(
            "| Redis ceiling, server-bound (50 connections, pipeline 16) | "
            + " | ".join([_sum(c.get("server"))] + [""] * (len(counts) - 1))
            + " | |"
        )
        lines += ["", "Per-command rates behind the ceiling (4 connections, no pipelining; commands/s):", ""]
        rt4 = (c.get("round_trip") or {}).get("4") or {}
        lines += ["| command | commands/s |", "|---|---:|"]
        lines += [f"| {k} | {_num(v)} |" for k, v in (rt4.get("commands_per_s") or {}).items()]
    lines += ["", "![throughput](throughput.png)", ""]
    lines += ["## 2. Dispatch latency (submit → handler start), 4 workers", ""]
    lat = q.get("latency", {})
    rate = q["config"]["load_rate"]
    lines += [
        f"Idle: one task at a time. Under load: {rate:g} tasks/s submitted one by one, open loop, for "
        f"{q['config']['load_seconds']:g} s (same rate for every system). Nearest-rank percentiles over all tasks.",
        "",
        "| system | idle p50 | idle p99 | idle n | load p50 | load p99 | load max | load n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in SYSTEMS:
        if s not in lat:
            continue
        i, ld = lat[s]["idle"], lat[s]["load"]
        lines.append(
            f"| {LABELS[s]} | {_num(i['p50_ms'], 1)} ms | {_num(i['p99_ms'], 1)} ms | {i['samples']} | "
            f"{_num(ld['p50_ms'], 1)} ms | {_num(ld['p99_ms'], 1)} ms | {_num(ld['max_ms'], 0)} ms | {ld['samples']} |"
        )
    lines += ["", "![latency](latency.png)", ""]
    if q.get("errors"):
        lines += ["Failures in this section:", ""] + [f"- {e}" for e in q["errors"]] + [""]
    return lines


def _recovery_md(results: dict[str, Any]) -> list[str]:
    rec = results["sections"]["recovery"]
    cfg = rec["config"]
    lines = ["## 3. Recovery from SIGKILL mid-task", ""]
    lines += [
        f"Task of {cfg['steps']} steps × {cfg['delay']} s; the worker running it is SIGKILLed right after step "
        f'{cfg["kill_after"]} ran. Every system\'s "abandoned" timeout is {cfg["abandon_s"]:g} s (agentswarm '
        "`claim_idle_ms`, Celery `visibility_timeout`, arq `job_timeout`; their defaults are 60 s, 1 h and 300 s). "
        "agentswarm checkpoints after every step; arq and Celery have no checkpoints.",
        "",
        "| scenario | back running after (s) | steps redone (fraction) | resumed from step | recovered |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, d in rec["scenarios"].items():
        resumed = sorted(
            {t["resumed_from_step"] for t in d["trials"] if t.get("resumed_from_step") is not None}
        )
        bound = max((t.get("bound_s") or 0) for t in d["trials"]) if d["trials"] else 0
        back = _sum(d["recovery_s"], 2) if d["recovery_s"]["n"] else f"> {bound:g} (bound)"
        lines.append(
            f"| {name} | {back} | {_sum(d['redone_fraction'], 2)} | {', '.join(map(str, resumed)) or '–'} | {d['recovered']} |"
        )
    lines += ["", "![recovery](recovery.png)", ""]
    if rec.get("errors"):
        lines += ["Failures in this section:", ""] + [f"- {e}" for e in rec["errors"]] + [""]
    return lines


def _ws_md(results: dict[str, Any]) -> list[str]:
    ws = results["sections"]["wscap"]
    lines = ["## 4. Websocket capacity (idle connections, one process pinned to one core)", ""]
    lines += [
        f"RLIMIT_NOFILE {ws['rlimit_nofile']:,}; 4 client processes; memory = server RSS delta / connections held.",
        "",
        "| server | held | KiB / connection | after gc + malloc_trim | connect time (s) | idle CPU (share of a core) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, d in ws["servers"].items():
        label = {
            "coordinator": "agentswarm coordinator",
            "bare": "bare `websockets` server (defaults)",
            "coordinator-nodeflate": "experiment: coordinator with permessage-deflate off (not the product)",
        }.get(kind, kind)
        lines.append(
            f"| {label} | {_sum(d['held'])} | {_sum(d['kib_per_connection'], 1)} | "
            f"{_sum(d.get('kib_per_connection_trimmed'), 1)} | {_sum(d['connect_seconds'], 1)} | {_sum(d['idle_cpu_fraction'], 2)} |"
        )
    if ws.get("errors"):
        lines += ["", "Failures: " + "; ".join(ws["errors"])]
    lines += [""]
    return lines


def _pulumi_md(results: dict[str, Any]) -> list[str]:
    p = results["sections"]["pulumi"]
    lines = ["## 5. Pulumi program evaluation under mocks (GKE stack)", ""]
    lines += [
        "`stacks/Pulumi.gke.yaml` with `agentswarm:agents.replicas` overridden; the real `infra/__main__.py` under "
        "`pulumi.runtime.set_mocks`, after one warm-up evaluation.",
        "",
        "| agents | evaluation time (s) | resources | StatefulSets |",
        "|---:|---:|---:|---:|",
    ]
    for n, d in p.items():
        lines.append(f"| {int(n):,} | {_sum(d['seconds'], 3)} | {d['resources'][0]} | {d['statefulsets']} |")
    lines += ["", "![capacity](capacity.png)", ""]
    return lines


def _fanout_md(results: dict[str, Any]) -> list[str]:
    f = results["sections"]["fanout"]
    cfg = f["config"]
    lines = [f"## 6. Fan-out / fan-in: 1 root × {cfg['children']:,} children, {cfg['agents']} agents", ""]
    lines += [
        f"Measured {f['started']} (load: start `{f['uptime_start']}`; end `{f['uptime_end']}`), code "
        f"`{f['git']}`; {cfg['repeats']} runs per backend after a warm-up. The root spawns its children, "
        "parks in `gather` (holding no agent) and is re-enqueued by the last child. tasks/s = "
        "(children + 1) / (root submitted → root result). Wake-up = last child's result recorded → the "
        "root's delivery starting again; gather = → the root's `gather` returning (wake-up, the replayed "
        "`spawn`, which finds its call done and creates nothing, and reading 1,000 outcomes). Method: "
        "`bench/fanout.py`.",
        "",
        "| backend | tasks/s | wake-up (ms) | gather returns (ms) | parks per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend, d in f["backends"].items():
        parks = sorted({r["parks"] for r in d["runs"]})
        lines.append(
            f"| agentswarm ({'Redis' if backend == 'redis' else 'NATS'}) | {_sum(d['tasks_per_s'])} | "
            f"{_sum(d['wake_ms'], 1)} | {_sum(d['gather_ms'], 1)} | {', '.join(map(str, parks))} |"
        )
    if f.get("errors"):
        lines += ["", "Failures: " + "; ".join(f["errors"])]
    lines += [""]
    return lines


def glance(results: dict[str, Any]) -> list[str]:
    """Systems side by side: the table to copy into the README."""
    sec = results["sections"]
    cols = [s for s in SYSTEMS if s in ((sec.get("queues") or {}).get("throughput") or {})]
    if not cols:
        return []
    lines = ["| | " + " | ".join(LABELS[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    ours4 = _med(_tp(results, "agentswarm-redis", 4))
    for n in (1, 4, 8):
        if any(_tp(results, c, n) for c in cols):
            lines.append(
                f"| no-op tasks/s, {n} worker{'s' if n > 1 else ''} | "
                + " | ".join(_sum(_tp(results, c, n)) for c in cols)
                + " |"
            )
    if ours4:
        lines.append(
            "| agentswarm (Redis) ÷ system, 4 workers | "
            + " | ".join(f"{ours4 / v:.2f}×" if (v := _med(_tp(results, c, 4))) else "–" for c in cols)
            + " |"
        )
    lat = (sec.get("queues") or {}).get("latency") or {}
    if lat:
        lines.append(
            "| dispatch p50 / p99, idle (ms) | "
            + " | ".join(
                f"{_num(lat[c]['idle']['p50_ms'], 1)} / {_num(lat[c]['idle']['p99_ms'], 1)}"
                if c in lat
                else "–"
                for c in cols
            )
            + " |"
        )
        rate = (sec.get("queues") or {}).get("config", {}).get("load_rate", 0)
        lines.append(
            f"| dispatch p50 / p99 at {rate:g} tasks/s (ms) | "
            + " | ".join(
                f"{_num(lat[c]['load']['p50_ms'], 1)} / {_num(lat[c]['load']['p99_ms'], 1)}"
                if c in lat
                else "–"
                for c in cols
            )
            + " |"
        )
    rec = (sec.get("recovery") or {}).get("scenarios") or {}
    if rec:

        def cell(system: str, what: str) -> str:
            parts = []
            for scen, d in rec.items():
                name, mode = scen.split("/")
                if name != system:
                    continue
                if what == "time":
                    bound = max((t.get("bound_s") or 0) for t in d["trials"]) if d["trials"] else 0
                    val = _sum(d["recovery_s"], 1, " s") if d["recovery_s"]["n"] else f"> {bound:g} s"
                else:
                    red = d["redone_fraction"]
                    val = f"{red['median'] * 100:.0f} % (worst {red['max'] * 100:.0f} %)" if red["n"] else "–"
                parts.append(f"{mode}: {val}")
            return "; ".join(parts) or "–"

        lines.append(
            "| SIGKILL mid-task → running again | " + " | ".join(cell(c, "time") for c in cols) + " |"
        )
        lines.append("| work redone after SIGKILL | " + " | ".join(cell(c, "redone") for c in cols) + " |")
    return lines


def headline(results: dict[str, Any]) -> list[str]:
    rows = goals(results)
    lines = ["| Goal | Target | Measured (median, same run) | Status |", "|---|---|---|---|"]
    lines += [f"| {g} | {t} | {m} | {ok} |" for g, t, m, ok in rows]
    return lines


NOTES = [
    "## Why the numbers look like this",
    "",
    "- **Per-task cost.** An agentswarm agent spends 6 Redis round trips and a thread hop on a no-op task "
    "(read, task data, result check, `started` event, result, ack; checkpoint load) and runs one task at a "
    "time by design (an agent is one long-running AI worker with its own volume). taskiq needs about 3 round "
    "trips per task and keeps up to 100 tasks in flight per process, arq 10. FINDINGS.md §3: two more round "
    "trips per task were removed in `a4f0fa5`.",
    "- **NATS backend.** Until `a4f0fa5` its throughput and latency were bounded by two fsyncs per task in the "
    "event loop (FINDINGS.md §1). The *Code measured* line above says which code these numbers belong to.",
    "- **Latency p99.** On a 2-core machine shared with other jobs the 99th percentile is mostly scheduler delay; "
    "it hits every system. The p50 and the comparison within this run are the robust part. arq's latency is its "
    "0.5 s queue poll.",
    "- **Recovery.** A restarted agent re-takes its own pending delivery at once and resumes from its last "
    "checkpoint (at most the step in flight is redone); another agent takes over after `claim_idle_ms`. Celery "
    "with Redis brings an unacknowledged task back only when kombu's restore cycle runs (every ~100 s, after "
    "`visibility_timeout`); arq after `job_timeout + 10 s`; both start the task over.",
    "- **Websocket memory.** With websockets' defaults ~35 of the ~50 KiB per idle connection are the "
    "permessage-deflate zlib contexts kept for every connection (the bare server row); the coordinator turns "
    "compression off since FINDINGS.md §2, and the experiment row forces it off regardless of the code measured.",
    "- **Fan-out.** A child costs a no-op task plus a tree lookup and the notification of its parent (Redis: one "
    "Lua script; NATS: a KV read and a compare-and-set of the parent's waiter record, which the agents contend "
    "for), so fan-out runs below the no-op rates of section 1. Waking the parent is one re-enqueue, done by the "
    "same script or CAS that records the last child, so the wake-up is about one dispatch latency.",
    "",
]


def _streaming_md() -> list[str]:
    """Section 8 from bench/streaming/{before,after}.json (bench/streaming.py runs on its own, on two checkouts)."""
    folder = Path(__file__).resolve().parent / "streaming"
    if not ((folder / "before.json").exists() and (folder / "after.json").exists()):
        return []
    from bench.streaming import render

    before = json.loads((folder / "before.json").read_text())
    after = json.loads((folder / "after.json").read_text())
    lines = [*render(before, after).splitlines(), ""]
    if (folder / "NOTES.md").exists():
        lines += [*(folder / "NOTES.md").read_text().splitlines(), ""]
    return lines


def write_report(results: dict[str, Any], out: Path) -> None:
    import json

    results = json.loads(json.dumps(results, default=str))  # int keys -> str, as when read back from disk
    _plots(results, out)
    m = results["machine"]
    v = results["versions"]
    sec = results["sections"]
    lines = [
        "# agentswarm benchmarks against its peers",
        "",
        f"Generated by `{results['command']}` ({results['started']} → {results.get('finished', '?')}, "
        f"{results.get('total_seconds', 0) / 60:.1f} min). Raw numbers: `results.json`. Method: `bench/README.md`.",
        "",
        f"- **Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}. "
        "The machine is shared: other jobs ran during the measurement, so absolute numbers are noisy; systems "
        "were measured interleaved in one run, so the ratios are the meaningful part.",
        f"- **Load:** start `{results['uptime_start']}`; end `{results.get('uptime_end', '?')}`.",
        "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- **Code measured:** `{results.get('git', 'unknown')}`.",
        "",
        "## Headline",
        "",
        *glance(results),
        "",
        "Celery's and arq's recovery used the same 5 s abandon timeout as agentswarm; taskiq is not in the recovery "
        "benchmark (the goals compare with Celery and arq). Redis ceiling and the websocket and Pulumi numbers are below.",
        "",
        "### The goals",
        "",
        *headline(results),
        "",
    ]
    if results.get("quick"):
        lines.insert(2, "> **Smoke run (`--quick`)**: small counts, one repeat. Not for quoting.\n")
    if "queues" in sec:
        lines += _queues_md(results)
    if "recovery" in sec:
        lines += _recovery_md(results)
    if "wscap" in sec:
        lines += _ws_md(results)
    if "pulumi" in sec:
        lines += _pulumi_md(results)
    if "fanout" in sec:
        lines += _fanout_md(results)
    lines += _streaming_md()
    lines += NOTES
    if results.get("section_errors"):
        lines += ["## Sections that failed", ""]
        for name, err in results["section_errors"].items():
            lines += [f"### {name}", "", "```", err.strip(), "```", ""]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
