"""The operator dashboard in real headless Chromium against the real cloud process:
the fleet table, live telemetry without reload, a deployment started from the form
and followed through its waves, operator buttons, and the auth error."""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest

from dashboard_helpers import ROOT, TOKENS, CloudProcess, Gateway, chromium, make_models

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and Path("/usr/bin/chromedriver").exists()),
                                reason="needs Debian chromium + chromium-driver")

WAIT_S = 45        # a loaded 2-core box: be generous, waits return as soon as the page is ready
SINE_NODES = ["n-1", "n-2", "n-3", "n-4"]


@pytest.fixture(scope="module")
def dash_cloud(tmp_path_factory):
    """The cloud with site plant-a (4 sine nodes, gw-1) and plant-b (anomaly + weather nodes, gw-2)."""
    tmp = tmp_path_factory.mktemp("dash")
    c = CloudProcess(tmp, make_models(tmp / "models"))
    try:
        a, b = Gateway(c, "plant-a", "gw-1"), Gateway(c, "plant-b", "gw-2")
        a.send(heartbeats=[a.heartbeat(n, {"sine": 3}) for n in SINE_NODES])
        a.send(telemetry=[a.sine("n-1", (i * 0.618 % 1.0) * 2 * math.pi) for i in range(40)])
        b.send(heartbeats=[b.heartbeat("a-1", {"anomaly": 1}), b.heartbeat("w-1", {"weather": 1})])
        b.send(telemetry=[b.record("a-1", "anomaly", 1, int(i % 7 == 0), 0.09 if i % 7 == 0 else 0.01 + 0.003 * (i % 5))
                          for i in range(30)]
               + [b.record("w-1", "weather", 1, ["sunny", "cloudy", "rain"][i % 3 if i < 8 else 0], 0.8) for i in range(12)])
        c.gateways = {"plant-a": a, "plant-b": b}
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def wait(driver, cond, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: cond(d))
    except TimeoutException:
        shot = ROOT / "var" / "dashboard" / "failure.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shot))
        seen = driver.execute_script("return ['flash', 'auth-error', 'dep-form-error', 'job-form-error']"
                                     ".map(id => id + ': ' + document.getElementById(id).textContent.trim()).join(' | ')")
        console = [e["message"] for e in driver.get_log("browser")][-10:]
        console.append(driver.execute_script("return [...(window.__inflight || [])].join(',')"))
        raise AssertionError(f"page never showed {what} within {timeout} s ({seen}; console {console}; "
                             f"screenshot {shot})") from None


def by_testid(driver, testid: str):
    from selenium.webdriver.common.by import By
    found = driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')
    return found[0] if found else None


def text_of(driver, testid: str) -> str:
    """Read in one script call: rows re-render on every live event, element handles go stale."""
    return driver.execute_script("const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);"
                                 "return e ? e.textContent.trim() : '';", testid)


def tattr(driver, testid: str, name: str) -> str:
    return driver.execute_script("const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);"
                                 "return e ? e.getAttribute(arguments[1]) : null;", testid, name) or ""


def attr(driver, element_id: str, name: str) -> str:
    return driver.execute_script("const e = document.getElementById(arguments[0]);"
                                 "return e ? e.getAttribute(arguments[1]) : null;", element_id, name) or ""


def click(driver, testid: str):
    """A real click on the element, retried while a live re-render replaces it."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d):
        el = by_testid(d, testid)
        if el is None:
            return False
        try:
            el.click()
            return True
        except StaleElementReferenceException:
            return False
    wait(driver, attempt, f"a clickable {testid}")


def open_page(driver, cloud, role="operator", token=None):
    driver.get_log("browser")                    # start each test with an empty console
    driver.get(f"{cloud.url}/?token={token if token is not None else TOKENS[role]}")
    if token is None:
        wait(driver, lambda d: d.execute_script("return document.body.dataset.loaded") == "yes", "the first load")
        wait(driver, lambda d: attr(d, "live", "data-state") == "live", "the live (SSE) indicator")


def set_field(driver, element_id: str, value: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    el = driver.find_element(By.ID, element_id)
    if el.tag_name != "select":
        el.clear()
        el.send_keys(value)
        return

    def choose(d):
        try:
            Select(d.find_element(By.ID, element_id)).select_by_value(value)
        except (NoSuchElementException, StaleElementReferenceException):
            return False       # options not there yet, or re-rendered under us
        return d.execute_script("return document.getElementById(arguments[0]).value", element_id) == value
    wait(driver, choose, f"option {value!r} chosen in #{element_id}")


def severe_console_errors(driver) -> list:
    """Script errors and failed loads; refused API calls are asserted by the tests themselves."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not (e["source"] == "network" and "/api/v1/" in e["message"])]


def test_page_shows_fleet_table(dash_cloud, browser):
    open_page(browser, dash_cloud, role="viewer")
    wait(browser, lambda d: all(by_testid(d, "node-row-" + n) for n in SINE_NODES + ["a-1", "w-1"]), "all six node rows")
    assert text_of(browser, "node-online-n-3") == "online"
    assert text_of(browser, "site-online-plant-a") == "4 / 4"
    assert text_of(browser, "site-online-plant-b") == "2 / 2"
    assert "sine v3" in text_of(browser, "node-last-n-1") and "#40" in text_of(browser, "node-last-n-1")
    assert text_of(browser, "fleet-summary") == "6 nodes · 6 online · 2 sites"
    wait(browser, lambda d: by_testid(d, "mv-status-sine-3") is not None, "the model registry")
    assert text_of(browser, "mv-status-sine-3") == "active"
    assert text_of(browser, "mv-status-sine-2") == "candidate"
    assert "token=" not in browser.current_url          # the secret left the address bar ...
    assert browser.execute_script("return localStorage.getItem('tinyfleet.token')") == TOKENS["viewer"]  # ... kept here
    urls = browser.execute_script("return [...document.querySelectorAll('script[src],link[href],img[src]')]"
                                  ".map(e => e.src || e.href)")
    assert urls and all(u.startswith(dash_cloud.url) or u.startswith("data:") for u in urls), urls   # no CDN
    assert severe_console_errors(browser) == []


def test_offline_status_shows_live(dash_cloud, browser):
    """A node's offline will (relayed by its gateway) turns its badge and the site count."""
    gw = dash_cloud.gateways["plant-b"]
    open_page(browser, dash_cloud, role="viewer")
    wait(browser, lambda d: text_of(d, "node-online-w-1") == "online", "w-1 online")
    gw.send(statuses=[{"v": 1, "node": "w-1", "state": "offline"}])
    wait(browser, lambda d: text_of(d, "node-online-w-1") == "offline", "w-1 offline")
    wait(browser, lambda d: text_of(d, "site-online-plant-b") == "1 / 2", "plant-b 1 / 2 online")
    gw.send(statuses=[{"v": 1, "node": "w-1", "state": "online", "ts": int(time.time() * 1000)}])
    wait(browser, lambda d: text_of(d, "node-online-w-1") == "online", "w-1 back online")


def test_live_telemetry_changes_without_reload(dash_cloud, browser):
    gw = dash_cloud.gateways["plant-a"]
    open_page(browser, dash_cloud)
    wait(browser, lambda d: by_testid(d, "node-row-n-2"), "node n-2")
    click(browser, "node-row-n-2")
    wait(browser, lambda d: attr(d, "tele-plot", "data-for") == "n-2/sine", "n-2's (empty) sine chart")
    assert attr(browser, "tele-plot", "data-points") == "0"
    assert text_of(browser, "node-last-n-2") == "–"
    browser.execute_script("window.__samePage = 'yes'")

    gw.send(telemetry=[gw.sine("n-2", (i * 0.618 % 1.0) * 2 * math.pi) for i in range(25)])
    wait(browser, lambda d: "#25" in text_of(d, "node-last-n-2"), "n-2's new last result in the fleet table")
    wait(browser, lambda d: attr(d, "tele-plot", "data-points") == "25", "25 points in the n-2 chart")
    assert attr(browser, "tele-plot", "data-kind") == "sine"
    assert "latest #25" in text_of(browser, "tele-latest")

    gw.send(telemetry=[gw.sine("n-2", 1.0 + i / 10) for i in range(5)])
    wait(browser, lambda d: attr(d, "tele-plot", "data-points") == "30", "30 points after the second batch")
    assert "#30" in text_of(browser, "node-last-n-2")
    assert browser.execute_script("return window.__samePage") == "yes", "the page reloaded"

    click(browser, "node-row-a-1")       # anomaly scores with the version's threshold line
    wait(browser, lambda d: attr(d, "tele-plot", "data-for") == "a-1/anomaly", "the anomaly chart of a-1")
    assert attr(browser, "tele-plot", "data-points") == "30" and attr(browser, "tele-plot", "data-kind") == "anomaly"
    wait(browser, lambda d: attr(d, "tele-plot", "data-threshold") == "0.05", "the threshold from anomaly v1's report.json")
    click(browser, "node-row-w-1")       # weather classes: timeline, counts and an event list
    wait(browser, lambda d: attr(d, "tele-plot", "data-for") == "w-1/weather", "the weather class chart of w-1")
    assert attr(browser, "tele-plot", "data-points") == "12" and attr(browser, "tele-plot", "data-kind") == "classes"
    assert len(browser.find_elements("css selector", "#tele-events li")) == 12
    assert severe_console_errors(browser) == []


def node_state(driver, node):
    return text_of(driver, "dep-node-state-" + node)


def test_deployment_from_the_form_progresses(dash_cloud, browser):
    gw = dash_cloud.gateways["plant-a"]
    open_page(browser, dash_cloud)
    set_field(browser, "dep-model", "sine")
    set_field(browser, "dep-version", "2")
    set_field(browser, "dep-site", "plant-a")
    for field, value in (("dep-canary", "1"), ("dep-wave-size", "2"), ("dep-interval", "0.5"),
                         ("dep-failure-pct", "50"), ("dep-min-nodes", "3")):
        set_field(browser, field, value)
    click(browser, "dep-submit")
    wait(browser, lambda d: text_of(d, "dep-id").startswith("d-"), "the new deployment's id")
    dep_id = text_of(browser, "dep-id")
    body = dash_cloud.get(f"/api/v1/deployments/{dep_id}").json()      # the form sent what the operator typed
    assert {k: v for k, v in body["target"].items() if v} == {"site": "plant-a"} and body["version"] == 2 and body["canary"] == 1
    assert body["wave"] == {"mode": "constant", "size": 2, "interval_s": 0.5}
    assert body["abort"] == {"failure_pct": 50.0, "min_nodes": 3}
    waves = {}
    for n in SINE_NODES:
        wave = wait(browser, lambda d: tattr(d, "dep-node-" + n, "data-wave"), f"the row of {n}")
        waves.setdefault(int(wave), []).append(n)
    assert sorted(len(v) for v in waves.values()) == [1, 1, 2] and len(waves[0]) == 1
    canary = waves[0][0]
    wait(browser, lambda d: node_state(d, canary) == "QUEUED", "the canary offered (QUEUED)")

    click(browser, "dep-pause")          # paused: the canary may finish, no new wave goes out
    wait(browser, lambda d: text_of(d, "dep-state") == "paused", "state paused")
    gw.send(ota_states=[gw.ota(canary, dep_id, "sine", 2, "DOWNLOADING")])
    wait(browser, lambda d: node_state(d, canary) == "DOWNLOADING", "the canary DOWNLOADING")
    gw.send(ota_states=[gw.ota(canary, dep_id, "sine", 2, "UPDATED")])
    wait(browser, lambda d: node_state(d, canary) == "UPDATED", "the canary UPDATED")
    wait(browser, lambda d: tattr(d, "dep-wave-0", "data-finished") == "1", "wave 0 done (1/1)")
    assert all(node_state(browser, n) == "PENDING" for n in waves[1])
    click(browser, "dep-resume")

    for w in (1, 2):
        for n in waves[w]:
            wait(browser, lambda d: node_state(d, n) == "QUEUED", f"wave {w} node {n} QUEUED")
        gw.send(ota_states=[gw.ota(n, dep_id, "sine", 2, "UPDATED") for n in waves[w]])
        wait(browser, lambda d: tattr(d, f"dep-wave-{w}", "data-finished") == str(len(waves[w])),
             f"wave {w} finished")
    wait(browser, lambda d: text_of(d, "dep-state") == "succeeded", "the deployment succeeded")
    assert text_of(browser, f"dep-row-state-{dep_id}") == "succeeded"
    assert all(node_state(browser, n) == "UPDATED" for n in SINE_NODES)
    assert browser.execute_script("return document.getElementById('dep-pause').disabled")   # nothing left to pause
    assert severe_console_errors(browser) == []


def test_abort_rolls_back_in_the_page(dash_cloud, browser):
    """Abort from the page: the pending node is withdrawn, the updated one is rolled back."""
    gw = dash_cloud.gateways["plant-a"]
    open_page(browser, dash_cloud)
    set_field(browser, "dep-model", "sine")
    set_field(browser, "dep-version", "1")
    set_field(browser, "dep-site", "")
    for field, value in (("dep-nodes", "n-3, n-4"), ("dep-canary", "1"), ("dep-wave-size", "1"), ("dep-interval", "600")):
        set_field(browser, field, value)
    old = text_of(browser, "dep-id")
    click(browser, "dep-submit")
    wait(browser, lambda d: text_of(d, "dep-id") not in ("", old), "the second deployment's id")
    dep_id = text_of(browser, "dep-id")
    wait(browser, lambda d: node_state(d, "n-3") == "QUEUED" and node_state(d, "n-4") == "PENDING", "n-3 offered, n-4 pending")
    gw.send(ota_states=[gw.ota("n-3", dep_id, "sine", 1, "UPDATED")])
    wait(browser, lambda d: node_state(d, "n-3") == "UPDATED", "n-3 UPDATED")

    click(browser, "dep-abort")
    wait(browser, lambda d: text_of(d, "dep-state") == "aborted", "state aborted")
    wait(browser, lambda d: node_state(d, "n-4") == "CANCELED", "n-4 withdrawn")
    wait(browser, lambda d: text_of(d, f"dep-row-state-{dep_id}-rb") == "running", "the rollback deployment in the list")
    gw.send(ota_states=[gw.ota("n-3", dep_id + "-rb", "sine", 2, "UPDATED")])   # n-3 back on v2
    wait(browser, lambda d: node_state(d, "n-3") == "ROLLED_BACK", "n-3 ROLLED_BACK in the aborted deployment")
    wait(browser, lambda d: text_of(d, f"dep-row-state-{dep_id}-rb") == "succeeded", "the rollback succeeded")
    assert severe_console_errors(browser) == []


def test_deploy_form_shows_api_refusal(dash_cloud, browser):
    open_page(browser, dash_cloud)
    set_field(browser, "dep-model", "sine")
    set_field(browser, "dep-nodes", "no-such-node")
    set_field(browser, "dep-site", "")
    click(browser, "dep-submit")
    wait(browser, lambda d: "422" in text_of(d, "dep-form-error") and "no-such-node" in text_of(d, "dep-form-error"),
         "the 422 for an unknown node")


def test_bad_token_shows_auth_error(dash_cloud, browser):
    open_page(browser, dash_cloud, token="not-a-token")
    wait(browser, lambda d: by_testid(d, "auth-error").is_displayed(), "the auth error banner")
    assert "401" in text_of(browser, "auth-error") and "unknown token" in text_of(browser, "auth-error")
    wait(browser, lambda d: attr(d, "live", "data-state") == "offline", "live updates off")
    assert browser.find_elements("css selector", "#nodes-table tbody tr") == []


def test_viewer_cannot_act(dash_cloud, browser):
    open_page(browser, dash_cloud, role="viewer")
    assert not by_testid(browser, "auth-error").is_displayed()
    wait(browser, lambda d: by_testid(d, "job-start"), "the retrain button")
    click(browser, "job-start")
    wait(browser, lambda d: by_testid(d, "auth-error").is_displayed() and "403" in text_of(d, "auth-error"),
         "the 403 banner")
    assert dash_cloud.get("/api/v1/jobs").json() == []          # nothing was started


def test_operator_buttons_and_screenshot(dash_cloud, browser):
    """Start retrain, promote, the version's report plot; then a screenshot for a human."""
    open_page(browser, dash_cloud)
    set_field(browser, "job-model", "anomaly")
    set_field(browser, "job-site", "plant-b")
    set_field(browser, "job-reason", "false alarms on line 2")
    click(browser, "job-start")
    wait(browser, lambda d: text_of(d, "job-status-1") == "queued", "job #1 queued")   # no worker in this test
    job = dash_cloud.get("/api/v1/jobs/1").json()
    assert (job["model"], job["site"], job["reason"]) == ("anomaly", "plant-b", "false alarms on line 2")
    assert "queued (manual): false alarms on line 2" in text_of(browser, "job-log")     # the job's log, shown

    click(browser, "promote-sine-1")
    wait(browser, lambda d: text_of(d, "mv-status-sine-1") == "active", "sine v1 active")
    wait(browser, lambda d: text_of(d, "mv-status-sine-3") == "retired", "sine v3 retired")

    click(browser, "mv-anomaly-1")
    img = wait(browser, lambda d: by_testid(d, "plot-result.png"), "anomaly v1's result.png")
    wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 400,
         "the PNG decoded (400 px wide)")

    click(browser, "node-row-n-1")       # the sine chart for the picture
    wait(browser, lambda d: attr(d, "tele-plot", "data-for") == "n-1/sine", "n-1's sine chart")
    assert attr(browser, "tele-plot", "data-points") == "40"
    out = ROOT / "var" / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(height + 40, 1200), 4000))
    assert browser.save_screenshot(str(out / "dashboard.png"))
    assert severe_console_errors(browser) == []
