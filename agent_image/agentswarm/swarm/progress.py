"""A live view of task trees for ``agentswarm watch --tree`` and the local demo: one line per tree level.

It is fed the frames of :meth:`agentswarm.client.SwarmClient.watch` with ``follow_spawned=True`` and learns
the tree from the ``spawned`` events (a child is one level below the task that spawned it)::

    level 0  [##############................]  0/1 done  1 parked
    level 1  [##############################]  5/5 done
    level 2  [#######.......................]  1/8 done  3 running

On a terminal the block is redrawn in place; otherwise the lines are printed when they change (at most
every two seconds), so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable

    from agentswarm import protocol as p


class TreeProgress:
    """Per-level counters of the watched trees (roots at level 0) and their rendering."""

    def __init__(self, roots: Iterable[str], stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.level: dict[str, int] = dict.fromkeys(roots, 0)
        self.state: dict[str, str] = dict.fromkeys(self.level, "queued")
        self.fraction: dict[str, float] = dict.fromkeys(self.level, 0.0)
        self.started = time.monotonic()
        self._drawn = 0
        self._last_plain = 0.0
        self._last_block = ""

    # -- frames -------------------------------------------------------------------------------------------
    def on_event(self, frame: p.EventFrame) -> None:
        from agentswarm.client import event_fraction

        task_id, data = frame.task_id, frame.data
        kind = data.get("type")
        if task_id not in self.level:
            self.level[task_id] = 0
        if kind == "spawned":
            for child in data.get("children") or []:
                if isinstance(child, str) and child not in self.level:
                    self.level[child] = self.level[task_id] + 1
                    self.state[child] = "queued"
                    self.fraction[child] = 0.0
        elif kind == "parked":
            self.state[task_id] = "parked"
        elif kind == "input_required":
            self.state[task_id] = "input required"
        elif kind == "started":
            self.state[task_id] = "running"
        frac = event_fraction(data)
        if frac is not None:
            self.fraction[task_id] = max(self.fraction.get(task_id, 0.0), min(frac, 0.99))
        self.render()

    def on_result(self, frame: p.ResultFrame) -> None:
        self.state[frame.task_id] = frame.status
        self.fraction[frame.task_id] = 1.0
        self.render(force=not self.tty)

    # -- rendering ----------------------------------------------------------------------------------------
    def lines(self, clock: bool = True) -> list[str]:
        out = []
        for level in sorted(set(self.level.values())):
            tasks = [t for t, lv in self.level.items() if lv == level]
            counts: dict[str, int] = {}
            for t in tasks:
                counts[self.state.get(t, "queued")] = counts.get(self.state.get(t, "queued"), 0) + 1
            overall = sum(self.fraction.get(t, 0.0) for t in tasks) / len(tasks)
            filled = round(overall * self.width)
            parts = [
                f"level {level}",
                f"[{'#' * filled}{'.' * (self.width - filled)}]",
                f"{counts.get('done', 0)}/{len(tasks)} done",
            ]
            shown = ("dead", "cancelled", "input required", "running", "parked", "queued")
            parts += [f"{counts[s]} {s}" for s in shown if counts.get(s)]
            out.append("  ".join(parts))
        if clock:
            out[-1] += f"  {time.monotonic() - self.started:.0f}s"
        return out

    def render(self, force: bool = False) -> None:
        block = self.lines()
        if self.tty:
            up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
            self.stream.write(up + "\r" + "\n".join("\x1b[2K" + line for line in block))
            self.stream.flush()
            self._drawn = len(block)
            return
        now = time.monotonic()
        text = "\n".join(self.lines(clock=False))  # print when something but the clock changed
        if (force or now - self._last_plain >= 2.0) and text != self._last_block:
            self._last_plain = now
            self._last_block = text
            self.stream.write("\n".join(block) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.render()
            self.stream.write("\n")
            self.stream.flush()
        elif not self.tty:
            self._last_block = ""
            self.render(force=True)

    def summary(self) -> dict[str, Any]:
        """Counts per level and state (for tests and the local demo's summary)."""
        out: dict[str, Any] = {}
        for task_id, level in self.level.items():
            row = out.setdefault(f"level {level}", {})
            state = self.state.get(task_id, "queued")
            row[state] = row.get(state, 0) + 1
        return out
