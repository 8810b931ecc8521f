"""The dashboard under an event flood: does the page keep rendering while thousands of events/s arrive?

``python3 bench/dashboard.py [--tasks 8 --events 3000 --agents 4]`` starts ``agentswarm local``
(embedded NATS) whose agents run :func:`bench.dashboard_handlers.flood`, opens the dashboard in Debian's
headless Chromium and submits the tasks from the page (the page follows each one: every event reaches
it). Inside the page it measures, while the events stream: frames per second and the gaps between frames
(requestAnimationFrame), long tasks (PerformanceObserver, > 50 ms), and the events/s the page received.
It checks that every event arrived and one task's text is complete, and prints one summary line; nothing
is asserted on timing (this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[1]
OPEN_FIRST = (
    "const b = document.querySelector('#task-rows button[data-task=\"flood-0\"]');"
    " if (b) b.click(); return !!b;"
)

PROBE = """
window.__bench = {gaps: [], long: [], last: performance.now(), frames: 0};
const tick = (now) => { const b = window.__bench; b.gaps.push(now - b.last); b.last = now; b.frames++;
  requestAnimationFrame(tick); };
requestAnimationFrame(tick);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__bench.long.push(e.duration);
}).observe({type: "longtask", buffered: true});
"""
EVENTS_SHOWN = (
    "return [...document.querySelectorAll('#task-rows tr')]"
    ".reduce((n, r) => n + Number(r.cells[4].textContent || 0), 0);"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--events", type=int, default=3000, help="token events per task")
    ap.add_argument("--agents", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "agent_image"), str(ROOT), env.get("PYTHONPATH", "")])
    out = (tmp / "local.out").open("wb")
    argv = [sys.executable, "-m", "agentswarm.cli", "local", "--state-dir", str(tmp / "state"), "--port", "0"]
    argv += ["--agents", str(args.agents), "--handler", "bench.dashboard_handlers:flood"]
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        text = ""
        for _ in range(600):
            text = (tmp / "local.out").read_text()
            if "running; press Ctrl-C" in text:
                break
            time.sleep(0.1)
        url = re.search(r"dashboard\s+(\S+)", text)
        token = re.search(r"(?m)^\s+token\s+(\S+)$", text)
        assert url and token, text
        driver.get(url.group(1))
        driver.find_element(By.ID, "token").send_keys(token.group(1))
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        while driver.find_element(By.ID, "conn").get_attribute("data-state") != "live":
            time.sleep(0.05)
        driver.execute_script(PROBE)
        tasks = [{"task_id": f"flood-{i}", "payload": {"events": args.events}} for i in range(args.tasks)]
        box = driver.find_element(By.ID, "submit-json")
        box.clear()
        driver.execute_script("arguments[0].value = arguments[1];", box, json.dumps(tasks))
        start = time.monotonic()
        driver.find_element(By.CSS_SELECTOR, "#submit-form button").click()
        expected = args.tasks * (args.events + 2)  # started + tokens + result event per task
        samples: list[tuple[float, int]] = []
        opened = False
        while time.monotonic() - start < 300:
            shown = int(driver.execute_script(EVENTS_SHOWN))
            samples.append((time.monotonic() - start, shown))
            if not opened:  # watch one task's text grow in the task view meanwhile
                opened = bool(driver.execute_script(OPEN_FIRST))
            if shown >= expected:
                break
            time.sleep(0.5)
        bench = driver.execute_script(
            "const b = window.__bench; return {gaps: b.gaps, long: b.long, frames: b.frames};"
        )
        text_len = len(driver.find_element(By.ID, "task-text").get_attribute("textContent") or "")
        want_len = len("".join(f"{i} " for i in range(args.events)))
        elapsed = samples[-1][0]
        first = next((t for t, n in samples if n > 0), elapsed)
        gaps = sorted(bench["gaps"][1:])
        p99 = gaps[int(len(gaps) * 0.99) - 1] if gaps else 0.0
        print(
            f"dashboard flood: {args.tasks} tasks x {args.events} token events on {args.agents} agents: "
            f"{samples[-1][1]:,}/{expected:,} events shown, "
            f"{samples[-1][1] / max(elapsed - first, 1e-9):,.0f} events/s received; "
            f"{bench['frames'] / elapsed:.0f} frames/s, frame gap p99 {p99:.0f} ms, "
            f"max {gaps[-1] if gaps else 0:.0f} ms; {len(bench['long'])} long tasks "
            f"(max {max(bench['long'], default=0):.0f} ms); task view text {text_len:,}/{want_len:,} chars"
        )
        return 0 if samples[-1][1] >= expected and text_len == want_len else 1
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
