"""The entry of ``agentswarm local``: validate the configuration once, run the swarm until Ctrl-C (or the
demo's end), and map the outcome and every set-up error to an exit code."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
import webbrowser

from agentswarm import defaults
from agentswarm.local.options import LocalError, LocalOptions
from agentswarm.local.swarm import LocalSwarm
from agentswarm.settings import Settings


async def _main(opts: LocalOptions, settings: Settings) -> int:
    swarm = LocalSwarm(opts, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if swarm.stopping:
            # A second Ctrl-C while stopping: do not wait for graceful exits any more.
            swarm.say("second signal: killing all children now")
            swarm.kill_all()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    supervisor: asyncio.Task[None] | None = None
    work: asyncio.Task[int] | None = None
    waiter = asyncio.create_task(stop.wait())
    try:
        started = asyncio.create_task(swarm.start())
        await asyncio.wait({started, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)
            return 130
        started.result()  # raises LocalError from set-up
        supervisor = asyncio.create_task(swarm.supervise())
        if opts.open:
            open_dashboard(swarm)
        if opts.demo:
            from agentswarm.local.demo import run_demo

            work = asyncio.create_task(run_demo(swarm))
            await asyncio.wait({work, waiter, supervisor}, return_when=asyncio.FIRST_COMPLETED)
            code = work.result() if work.done() else 130
            if opts.open and work.done() and not waiter.done() and not supervisor.done():
                # Someone is looking at the dashboard: leave the finished swarm up to be explored.
                swarm.say(f"the dashboard stays up at {swarm.dashboard_url}; press Ctrl-C to stop")
                await asyncio.wait({waiter, supervisor}, return_when=asyncio.FIRST_COMPLETED)
        else:
            swarm.say("running; press Ctrl-C to stop")
            await asyncio.wait({waiter, supervisor}, return_when=asyncio.FIRST_COMPLETED)
            code = 0  # stopping on Ctrl-C/SIGTERM is the normal way out
        if supervisor.done() and not supervisor.cancelled():
            supervisor.result()
        return code
    finally:
        for task in (work, supervisor, waiter):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        swarm.say("stopping agents, coordinator and broker ...")
        await swarm.stop()
        swarm.say("stopped")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def open_dashboard(swarm: LocalSwarm) -> None:
    """Open the dashboard with the ``webbrowser`` module (``$BROWSER`` chooses the browser, as usual).

    The URL carries no token (URLs end up in histories and logs): the page asks for the one printed above.
    In a thread of its own: some browsers (console ones, ``$BROWSER`` scripts) run until they are closed.
    """
    url = swarm.dashboard_url

    def launch() -> None:
        if webbrowser.open(url, new=2):
            swarm.say(f"opened the dashboard in a web browser: {url}")
        else:
            swarm.say(f"could not open a web browser; open {url} yourself")

    threading.Thread(target=launch, name="open-dashboard", daemon=True).start()


def run_local(opts: LocalOptions) -> int:
    """Entry point of ``agentswarm local``; returns the process exit code."""
    from agentswarm.client import ClientError
    from agentswarm.handlers import HandlerLoadError, load_handler
    from agentswarm.settings import SettingsError, load_settings

    try:
        # The children read the same AGENTSWARM_* variables: fail here, once and clearly, rather than
        # in a crash-looping agent.
        handler = opts.handler
        if opts.demo:  # the demo's agents run the pipeline's planner (it names the other handlers)
            if handler and handler != defaults.DEMO_HANDLER:
                raise LocalError(f"--demo runs {defaults.DEMO_HANDLER}; drop --handler {handler}")
            handler = defaults.DEMO_HANDLER
        settings = load_settings(**({"handler": handler} if handler else {}))
        # Children run ``python -m``, which puts the working directory first on sys.path; do the same.
        sys.path.insert(0, os.getcwd())
        try:
            load_handler(settings.handler)
        finally:
            sys.path.remove(os.getcwd())
        return asyncio.run(_main(dataclasses.replace(opts, handler=settings.handler), settings))
    except (LocalError, SettingsError, HandlerLoadError) as exc:
        print(f"agentswarm local: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # the demo could not talk to its own coordinator
        print(f"agentswarm local: demo failed: {exc}", file=sys.stderr)
        return 1
