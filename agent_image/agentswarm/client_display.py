"""What the CLI shows of a watch: swarm feed lines, a live progress bar, input hints and the summary table."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from agentswarm import protocol as p

if TYPE_CHECKING:
    from agentswarm.client import TaskWatch


def describe_swarm_entry(data: dict[str, Any]) -> str:
    """One human-readable line for a swarm feed entry (``agentswarm watch --all``)."""
    at = time.strftime("%H:%M:%S", time.localtime(float(data.get("at") or 0)))
    if data.get("kind") == "agent":
        status = str(data.get("status"))
        task = f" {data['task_id']}" if status == "busy" and data.get("task_id") else ""
        return f"{at} agent {data.get('agent')} {status}{task}"
    line = f"{at} task {data.get('task_id')} {data.get('state')}"
    if data.get("agent") and data.get("state") == "running":
        line += f" on {data['agent']}"
    if data.get("attempt") and data.get("state") in ("running", "retrying", "dead"):
        line += f" (attempt {data['attempt']})"
    if data.get("reason"):
        line += f" ({data['reason']})"
    if data.get("error"):
        line += f": {_short(str(data['error']))}"
    return line


def event_fraction(data: dict[str, Any]) -> float | None:
    """Progress (0..1) an event reports, if any: ``progress``, or ``step`` of ``of``/``steps``/``total``."""
    progress = data.get("progress")
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        return max(0.0, min(1.0, float(progress)))
    step = data.get("step")
    total = next((data[k] for k in ("of", "steps", "total") if k in data), None)
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        return max(0.0, min(1.0, step / total))
    return None


def input_hint(task_id: str, data: dict[str, Any]) -> str:
    """What ``agentswarm watch`` prints for an ``input_required`` event: the question and how to answer."""
    question = json.dumps(data.get("question"))
    if len(question) > 200:
        question = question[:197] + "..."
    return (
        f"task {task_id} needs input: {question}\n"
        f"  answer with: agentswarm answer {task_id} --json '<JSON value>'"
    )


class ProgressBar:
    """A one-line live progress bar on a terminal (plain text lines when not a TTY).

    Overall progress = finished tasks + the fraction each running task last reported, over all tasks.
    """

    def __init__(self, task_ids: Iterable[str], stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.fraction: dict[str, float] = dict.fromkeys(task_ids, 0.0)
        self.done = 0
        self.dead = 0
        self.cancelled = 0
        self.events = 0
        self.reconnects = 0
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._last_line = ""
        self._dirty = False
        self._ticker: asyncio.Task[None] | None = None

    def on_event(self, frame: p.EventFrame) -> None:
        self.events += 1
        if frame.data.get("type") == "input_required":
            self.note(input_hint(frame.task_id, frame.data))
        frac = event_fraction(frame.data)
        if frac is not None and frame.task_id in self.fraction:
            self.fraction[frame.task_id] = max(self.fraction[frame.task_id], min(frac, 0.99))
        self.render()

    def on_result(self, frame: p.ResultFrame) -> None:
        if frame.status == "done":
            self.done += 1
        elif frame.status == "cancelled":
            self.cancelled += 1
        else:
            self.dead += 1
        self.fraction[frame.task_id] = 1.0
        self.render(force=not self.tty)

    def on_reconnect(self, count: int, _error: BaseException) -> None:
        self.reconnects = count
        self.render()

    def line(self) -> str:
        total = len(self.fraction) or 1
        overall = sum(self.fraction.values()) / total
        filled = round(overall * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        parts = [
            f"[{bar}] {overall * 100:5.1f}%",
            f"{self.done}/{len(self.fraction)} done",
        ]
        if self.dead:
            parts.append(f"{self.dead} dead")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        parts.append(f"{self.events} events")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnects")
        parts.append(f"{elapsed:.0f}s")
        return "  ".join(parts)

    def render(self, force: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self._dirty = True
            return
        now = time.monotonic()
        if force or now - self._last_plain >= 2.0:
            self._last_plain = now
            self._write_plain(self.line())

    def start_ticker(self, every: float = 1.0) -> None:
        """Redraw every ``every`` seconds so elapsed time moves while tasks run without events."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(every)
                self.render()

        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(tick())

    def note(self, text: str) -> None:
        """Print ``text`` above the bar (a TTY keeps the bar as the last line)."""
        prefix = "\r\x1b[2K" if self.tty else ""
        self.stream.write(prefix + text + "\n")
        self.stream.flush()
        if self.tty:
            self.render()

    def _write_plain(self, line: str) -> None:
        if line != self._last_line:
            self._last_line = line
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.tty and self._dirty:
            self.stream.write("\r\x1b[2K" + self.line() + "\n")
            self.stream.flush()
        elif not self.tty:
            self._write_plain(self.line())


def summary_table(watches: dict[str, TaskWatch]) -> str:
    """A plain-text table of finished tasks: id, status, agent, attempt, events, result/error."""
    rows = [("task", "status", "agent", "attempt", "events", "seconds", "result")]
    for w in watches.values():
        r = w.result
        if r is None:
            rows.append((w.task_id, "unfinished", "-", "-", str(w.events), "-", "-"))
            continue
        seconds = f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"
        shown = r.error if r.status == "dead" else _short(r.result)
        rows.append(
            (
                w.task_id,
                r.status,
                r.agent_id or "-",
                str(r.attempt) if r.attempt is not None else "-",
                str(w.events),
                seconds,
                shown or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
