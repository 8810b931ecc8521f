"""One supervised child process: started in its own process group with its output in a log file,
stopped gracefully or killed as a whole group, restartable under the same name.

Local mode's broker, coordinator and agents, and the private broker servers of the tests and benchmarks
(:mod:`agentswarm.servers`), are all instances of :class:`ChildProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

#: Exec trampoline: ask the kernel to SIGTERM the child when its parent dies (Linux
#: ``PR_SET_PDEATHSIG``, kept across exec), bail out if the parent is already gone, then exec the
#: real command. Done in a fresh interpreter rather than in ``preexec_fn``, which is unsafe once the
#: parent has threads (asyncio's resolver, httpx).
_TRAMPOLINE = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class ChildProcess:
    """A command run in its own process group (a terminal's Ctrl-C reaches only its parent).

    ``die_with_parent`` makes the kernel SIGTERM the child when this process dies, even by SIGKILL, so a
    supervisor never leaves orphans behind. Subclasses may compute the command (:meth:`command`) and
    wait for readiness (:meth:`wait_ready`) in :meth:`start`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str] = (),
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        #: ``time.monotonic()`` of the last start, and how many starts came after the first.
        self.started_at = 0.0
        self.restarts = 0

    def command(self) -> list[str]:
        """The command line to run; the ``argv`` given to the constructor unless a subclass knows better."""
        return list(self.argv)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def spawn(self) -> None:
        """Start the process and return at once (no readiness check); counts a restart after the first."""
        argv = self.command()
        if self.die_with_parent:
            argv = [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.proc is not None:
            self.restarts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.started_at = time.monotonic()

    def wait_ready(self) -> None:
        """Block until the process serves; nothing to wait for unless a subclass says so."""

    def start(self) -> Self:
        """Spawn (unless running) and wait until ready; a failed start is killed and reported with its log."""
        if self.running:
            return self
        self.spawn()
        try:
            self.wait_ready()
        except Exception as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.kill()
            raise RuntimeError(f"{self.name} failed to start: {exc}\n{tail}") from exc
        return self

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (its own children included)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the group and reap: no shutdown, no flush beyond what the child already persisted."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL whatever is left of the group."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)  # type: ignore[union-attr]
        self.kill()

    async def stop_async(self, grace: float) -> None:
        """:meth:`stop` without blocking the event loop, so that many children stop in parallel."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.running and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a pid
                await asyncio.sleep(0.05)
        self.kill()

    def restart(self, *, hard: bool = True) -> Self:
        """Kill (``hard``) or stop the child, then start it again with the same command and log."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe_exit(code: int | None) -> str:
    """``exit code 3``, ``killed by SIGKILL``: how a child ended, for humans."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
