"""Local mode's restart policy: a child that exits comes back under the same identity, at once after a
good run and with growing delays in a crash loop, until supervision stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from agentswarm.backoff import Backoff
from agentswarm.process import ChildProcess, describe_exit

#: A child that ran this long before exiting was healthy: it restarts after the shortest delay.
HEALTHY_RUN_SECONDS = 10.0
#: Restart delays of a crash loop: from half a second, doubling, up to this many seconds.
MAX_RESTART_DELAY = 30.0


class Supervisor:
    """Watches ``children`` and restarts any that exits; ``on_restart`` runs after each round of restarts."""

    def __init__(
        self,
        children: Sequence[ChildProcess],
        say: Callable[[str], None],
        on_restart: Callable[[], None],
    ) -> None:
        self.children = list(children)
        self.say = say
        self.on_restart = on_restart
        self.stopping = False
        #: Names of children stopped on purpose (scaled in): not restarted while listed here.
        self.paused: set[str] = set()
        self._backoff = {id(c): Backoff(initial=0.5, maximum=MAX_RESTART_DELAY) for c in self.children}
        self._due: dict[int, float] = {}

    async def run(self) -> None:
        """Poll the children until :attr:`stopping`; never returns otherwise."""
        while not self.stopping:
            restarted = False
            for child in self.children:
                if self.stopping:
                    break
                restarted |= self._tend(child, time.monotonic())
            if restarted:
                self.on_restart()
            await asyncio.sleep(0.2)

    def _tend(self, child: ChildProcess, now: float) -> bool:
        """Schedule the restart of an exited child, or restart it when due; True if it was restarted."""
        if child.proc is None or child.running or child.name in self.paused:
            self._due.pop(id(child), None)
            return False
        due = self._due.get(id(child))
        if due is None:
            backoff = self._backoff[id(child)]
            if now - child.started_at > HEALTHY_RUN_SECONDS:
                backoff.reset()
            delay = backoff.next_delay()
            self._due[id(child)] = now + delay
            self.say(f"{child.name} exited ({describe_exit(child.returncode)}); restarting in {delay:.1f}s")
            return False
        if now < due:
            return False
        del self._due[id(child)]
        child.spawn()
        return True
