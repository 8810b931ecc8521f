"""The dashboard in a real browser, against a real ``agentswarm local --demo --open`` (its own NATS broker).

Debian's ``chromium`` and ``chromium-driver`` driven by selenium with both paths given explicitly (Selenium
Manager would try to download a driver). The test logs in (a wrong token first), watches the demo pipeline
complete, opens a task and sees its events arrive, SIGKILLs the coordinator mid-run and sees the page
reconnect and resume with every event exactly once, and submits a task from the page.

Screenshots of the main views go to the test's temporary directory, and also to ``$AGENTSWARM_SCREENSHOTS``
when it is set (``AGENTSWARM_SCREENSHOTS=docs/img`` refreshes the README's pictures).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from .helpers import wait_until
from .test_local import LocalRun

pytestmark = pytest.mark.timeout(300)

#: Where Debian's packages put the browser and its driver (``.ci/run`` installs them).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    _page[:] = [driver]
    try:
        yield driver
    finally:
        _page.clear()
        driver.quit()


def shot(driver: WebDriver, tmp: Path, name: str, element: str | None = None) -> None:
    """The window, scrolled to the top or to ``element``, as ``<name>.png``."""
    if element is None:
        driver.execute_script("window.scrollTo(0, 0)")
    else:
        target = driver.find_element(By.CSS_SELECTOR, element)
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", target)
    driver.save_screenshot(str(tmp / f"{name}.png"))
    target = os.environ.get("AGENTSWARM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / f"{name}.png", Path(target) / f"{name}.png")


def text(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (WebDriverException, StaleElementReferenceException):
        return ""


def attr(driver: WebDriver, css: str, name: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).get_attribute(name) or "")
    except (WebDriverException, StaleElementReferenceException):
        return ""


def row_states(driver: WebDriver) -> dict[str, str]:
    """task id -> state of the rows of the task list (rows are replaced while read: retried by callers)."""
    states = driver.execute_script(
        "return [...document.querySelectorAll('#task-rows tr')].map(r => [r.dataset.task, r.dataset.state]);"
    )
    return {str(k): str(v) for k, v in states}


def event_ids(driver: WebDriver) -> list[str]:
    ids = driver.execute_script(
        "return [...document.querySelectorAll('#task-events li')].map(li => li.dataset.id);"
    )
    return [str(i) for i in ids]


#: The browser of the running test, for the page's state in a failure message.
_page: list[WebDriver] = []


def until(predicate: Callable[[], Any], what: str, within: float = 60) -> None:
    try:
        wait_until(lambda: bool(predicate()), within, what)
    except TimeoutError as exc:
        if not _page:
            raise
        driver = _page[0]
        state = {
            "status": text(driver, "#conn"),
            "rows": row_states(driver),
            "view": text(driver, "#task-title"),
            "events": len(event_ids(driver)),
        }
        raise TimeoutError(f"{exc}; page: {state}") from None


def click(driver: WebDriver, css: str) -> None:
    """Click what ``css`` finds; the task list is re-rendered a few times a second, so retry a stale find."""

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    until(attempt, f"a click on {css}", 10)


def login(driver: WebDriver, token: str) -> None:
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def test_dashboard_in_a_real_browser(
    tmp_path: Path, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``--open`` runs $BROWSER with the URL (the webbrowser module's convention): record what it was given.
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {opened}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER", str(script))
    run = LocalRun(
        tmp_path,
        tmp_path / "state",
        "--demo",
        "--open",
        "--agents",
        "3",
        "--demo-tasks",
        "4",
        "--demo-steps",
        "40",
        "--demo-delay",
        "0.25",
    )
    try:
        url = run.wait_output(r"dashboard\s+(http://\S+/)").group(1)
        token = run.wait_output(r"(?m)^\s+token\s+(\S+)$").group(1)
        root = run.wait_output(r"submitted pipeline (\S+):").group(1)
        until(lambda: opened.exists() and opened.read_text().split() == [url], "the browser opened")
        assert token not in opened.read_text()

        browser.get(url)
        # A wrong token: a clear message, the login form again, nothing stored.
        login(browser, "not-the-token")
        until(lambda: "refused this token" in text(browser, "#login-error"), "the wrong-token message")
        assert "invalid token" in text(browser, "#login-error")
        assert browser.find_element(By.ID, "login").is_displayed()
        assert not browser.find_element(By.ID, "main").is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('agentswarm.token')") is None
        shot(browser, tmp_path, "dashboard-login")

        login(browser, token)
        until(lambda: attr(browser, "#conn", "data-state") == "live", "the page to go live")
        assert browser.execute_script("return sessionStorage.getItem('agentswarm.token')") == token
        assert token not in browser.current_url
        first_connection = text(browser, "#conn")

        workers = [f"{root}-0-{i}" for i in range(4)]
        frames = str(attr(browser, 'meta[name="agentswarm-frames"]', "content")).split()
        if "subscribe_swarm" in frames:
            # The swarm feed lists every task and agent without being told about them.
            until(lambda: {root, *workers} <= set(row_states(browser)), "the swarm feed's tasks")
            until(lambda: "busy" in text(browser, "#agent-rows"), "the swarm feed's agents")
        # The demo's tree: open the root, its children appear as they are spawned.
        open_field = browser.find_element(By.ID, "open-id")
        open_field.send_keys(root)
        browser.find_element(By.CSS_SELECTOR, "#open-form button").click()
        until(lambda: set(workers) <= set(row_states(browser)), "the workers listed")
        until(lambda: "running" in row_states(browser).values(), "a worker running")
        until(lambda: text(browser, "#s-running") not in ("", "-"), "queue stats")

        # A running worker's events arrive while the view is open.
        worker = next(t for t, s in row_states(browser).items() if s == "running" and t in workers)
        click(browser, f'#task-rows button[data-task="{worker}"]')
        until(lambda: text(browser, "#task-title") == f"Task {worker}", "the task view")
        until(lambda: len(event_ids(browser)) >= 3, "events in the task view")
        seen = len(event_ids(browser))
        until(lambda: len(event_ids(browser)) > seen, "more events arriving")
        shot(browser, tmp_path, "dashboard-task", "#task-view")

        # The coordinator dies mid-run; the supervisor restarts it on the same port and the page resumes.
        coordinator = run.manifest()["pids"]["coordinator"]
        os.kill(coordinator, signal.SIGKILL)
        until(lambda: attr(browser, "#conn", "data-state") != "live", "the page to notice the restart", 30)
        until(lambda: run.manifest()["pids"]["coordinator"] != coordinator, "the coordinator restarted", 30)
        until(lambda: attr(browser, "#conn", "data-state") == "live", "the page to reconnect", 60)
        assert text(browser, "#conn") != first_connection  # a new connection id

        # The whole pipeline completes: root, four workers and the reducer, all done.
        reducer = f"{root}-1-0"
        until(
            lambda: (
                (s := row_states(browser)).get(root) == "done"
                and all(s.get(t) == "done" for t in [*workers, reducer])
            ),
            "the demo pipeline done",
            120,
        )
        # Every event of the worker exactly once across the restart, ending with its one result event.
        until(lambda: "result:" in text(browser, "#task-outcome"), "the worker's result")
        ids = event_ids(browser)
        assert len(ids) == len(set(ids)), "an event was shown twice"
        kinds = browser.execute_script(
            "return [...document.querySelectorAll('#task-events li .t')].map(s => s.textContent);"
        )
        assert kinds.count("result") == 1 and kinds[-1] == "result"
        assert kinds.count("progress") == 40, kinds
        assert re.search(r"\(\d+\)", text(browser, "#events-count"))
        until(lambda: run.output().count("demo finished: 6 done, 0 dead-lettered") == 1, "the CLI's summary")

        # The root's view: its children and its result.
        click(browser, f'#task-rows button[data-task="{root}"]')
        until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#task-children li")) == 5, "children")
        until(lambda: "digest" in text(browser, "#task-outcome"), "the root's result")
        handler = Select(browser.find_element(By.ID, "f-handler"))
        handler.select_by_value("agentswarm.handlers.tree:work")
        until(lambda: set(row_states(browser)) == set(workers), "the handler filter")
        handler.select_by_value("")
        state = Select(browser.find_element(By.ID, "f-state"))
        state.select_by_value("running")
        until(lambda: row_states(browser) == {}, "the state filter (nothing runs any more)")
        state.select_by_value("done")
        until(lambda: len(row_states(browser)) == 6, "the state filter")
        state.select_by_value("")
        shot(browser, tmp_path, "dashboard-main")
        # The system's dark setting gives the dark theme.
        light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        dark_mode = [{"name": "prefers-color-scheme", "value": "dark"}]
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark_mode})
        dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert (light, dark) == ("rgb(246, 247, 249)", "rgb(13, 17, 23)")
        shot(browser, tmp_path, "dashboard-dark")
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

        # Submit from the page: a one-worker pipeline (the demo's agents run the planner), watched to the end.
        box = browser.find_element(By.ID, "submit-json")
        box.clear()
        box.send_keys('{"task_id": "from-the-page", "payload": {"workers": 1, "steps": 3, "delay": 0.05}}')
        browser.find_element(By.CSS_SELECTOR, "#submit-form button").click()
        until(lambda: "submitted 1 task(s): from-the-page" in text(browser, "#submit-message"), "the reply")
        until(lambda: row_states(browser).get("from-the-page") == "done", "the submitted task done")
        browser.find_element(By.ID, "f-text").send_keys("from-the")
        tree = {"from-the-page", "from-the-page-0-0", "from-the-page-1-0"}
        until(lambda: set(row_states(browser)) == tree, "the text search")

        if "cancel" in frames:
            # Cancel a running pipeline from its view: the task and the child it spawned end as cancelled.
            search = browser.find_element(By.ID, "f-text")
            search.send_keys(Keys.CONTROL, "a")
            search.send_keys("to-cancel")
            box.clear()
            box.send_keys('{"task_id": "to-cancel", "payload": {"workers": 1, "steps": 400, "delay": 0.2}}')
            click(browser, "#submit-form button")
            until(lambda: text(browser, "#task-title") == "Task to-cancel", "the submitted task's view")
            until(lambda: row_states(browser).get("to-cancel-0-0") == "running", "its worker running")
            click(browser, "#act-cancel")
            until(lambda: "to-cancel cancelled" in text(browser, "#task-message"), "the cancel reply")
            until(
                lambda: (
                    (s := row_states(browser)).get("to-cancel") == "cancelled"
                    and s.get("to-cancel-0-0") == "cancelled"
                ),
                "the tree cancelled",
            )
            assert not browser.find_element(By.ID, "act-cancel").is_displayed()

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        # The coordinator's restart is the only thing allowed to show up: the refused websocket handshakes.
        assert all("websocket" in e["message"].lower() or "ws://" in e["message"] for e in errors), errors
    finally:
        if run.proc.poll() is None:
            run.interrupt_and_wait()
