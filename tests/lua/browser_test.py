"""The example server's status page (GET /status) in headless Chromium,
driven by Selenium through chromium-driver, as a person would use it.

    python browser_test.py BASE_URL
    env: PGSPOUT_TEST_DSN (pg_stat_activity, via psql), CHROMIUM, CHROMEDRIVER

Start a throttled demo stream with the page's form (an EventSource), watch
its row count grow in the streams table (and in the page's own SSE panel),
click pause: the count stays put over several refreshes and the server
backend waits in ClientWrite with its query still there; click resume: the
count grows again; click cancel: the page's stream ends "cancelled", the
query leaves pg_stat_activity and the row leaves the table. Every wait is a
property polled up to a generous deadline, never a fixed sleep that a
loaded machine could outrun. No error in the browser's console.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, NoSuchElementException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BASE = sys.argv[1].rstrip("/")
DSN = os.environ["PGSPOUT_TEST_DSN"]
N, RATE = 1000000, 2000  # 500 s at full length: long enough to pause, resume and cancel


def ok(msg):
    print("browser_test: ok - " + msg, flush=True)


def until(fn, timeout, what, every=0.25):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (StaleElementReferenceException, NoSuchElementException, ValueError):
            v = None  # the table redrew or the cell is not filled yet: read again
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(every)


def backend():
    """(pid, state, wait_event) of the demo query the server runs, or None."""
    out = subprocess.run(
        ["psql", DSN, "-XtA", "-F", " ", "-c",
         "SELECT pid, state, coalesce(wait_event, '-') FROM pg_stat_activity "
         "WHERE pid <> pg_backend_pid() AND application_name = 'pgspout_ngx' "
         "AND query LIKE '%generate_series(1, $1::int)%' AND state = 'active'"],
        check=True, capture_output=True, text=True).stdout.split()
    return (int(out[0]), out[1], out[2]) if out else None


def registry():
    with urllib.request.urlopen(BASE + "/streams") as r:
        return json.load(r)


opts = Options()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
          "--no-first-run", "--disable-extensions"):
    opts.add_argument(a)
if os.geteuid() == 0:
    opts.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
profile = tempfile.TemporaryDirectory(prefix="pgspout-chromium.")
opts.add_argument("--user-data-dir=" + profile.name)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=opts)
driver.set_page_load_timeout(60)
failed = True
try:
    driver.get(BASE + "/")  # redirects to /status
    assert driver.current_url.endswith("/status"), driver.current_url
    assert driver.title == "pgspout streams", driver.title
    until(lambda: driver.find_element(By.ID, "empty").is_displayed(), 15, "'no running streams'")
    ok("%s: the status page, no stream running" % driver.current_url)

    # start a stream with the form
    for field, value in (("n", N), ("rate", RATE)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(str(value))
    driver.find_element(By.ID, "start-btn").click()
    sid = int(until(lambda: driver.find_element(By.ID, "sse-id").text.isdigit()
                    and driver.find_element(By.ID, "sse-id").text, 30, "the stream id (event: stream)"))
    row = '#streams tr[data-id="%d"]' % sid

    def cell(name):
        return driver.find_element(By.CSS_SELECTOR, row + " td." + name).text

    def rows():
        return int(cell("rows"))

    def click(action):
        driver.find_element(By.CSS_SELECTOR, row + " button." + action).click()
        until(lambda: driver.find_element(By.ID, "msg").text.startswith("%s %d: ok" % (action, sid)),
              15, "the %s answer" % action)

    def growing(k, timeout, what):
        """k readings of the table's rows, each higher than the one before"""
        seen = [rows()]

        def step():
            r = rows()
            if r > seen[-1]:
                seen.append(r)
            return len(seen) > k

        until(step, timeout, what)
        return seen

    seen = growing(3, 30, "the row count to grow 3 times")
    assert cell("state") == "running", cell("state")
    sse_rows = int(driver.find_element(By.ID, "sse-rows").text)
    assert sse_rows > 0, sse_rows
    pid = until(backend, 15, "the stream's query in pg_stat_activity")[0]
    ok("stream %d started from the form: rows %s, the page's EventSource got %d rows, backend %d"
       % (sid, " -> ".join(map(str, seen)), sse_rows, pid))

    # pause: the count stays put (after a fetch under way when the pause
    # came hands out what it held), the backend waits in ClientWrite
    click("pause")
    until(lambda: cell("state") == "paused", 15, "the table to show paused")

    def settled():
        a = rows()
        time.sleep(1.5)  # the table refreshes every second
        return a == rows()

    until(settled, 30, "the row count to settle")
    held, sse_held = rows(), int(driver.find_element(By.ID, "sse-rows").text)
    samples = []
    for _ in range(4):
        time.sleep(1.2)
        samples.append((rows(), cell("state"), int(driver.find_element(By.ID, "sse-rows").text)))
    assert all(s == (held, "paused", sse_held) for s in samples), (held, sse_held, samples)
    st = [s for s in registry() if s["id"] == sid][0]["stats"]
    assert st["state"] == "paused" and st["rows_delivered"] == held, (held, st)
    b = until(lambda: (lambda b: b if b and b[2] == "ClientWrite" else None)(backend()), 30,
              "the paused stream's backend to wait in ClientWrite")
    assert b[0] == pid, (b, pid)
    until(lambda: driver.find_element(By.ID, "sse-state").text == "paused", 15,
          "the page's SSE panel to show paused (progress events)")
    ok("pause: rows held at %d over %d table refreshes, SSE panel at %d rows and 'paused', "
       "backend %d %s/%s (query still there)" % (held, len(samples), sse_held, pid, b[1], b[2]))

    # resume: the count grows again
    click("resume")
    until(lambda: cell("state") == "running", 15, "the table to show running")
    seen = growing(2, 30, "the row count to grow after the resume")
    assert seen[0] >= held, (seen, held)
    ok("resume: rows %s" % " -> ".join(map(str, [held] + seen[1:])))

    # cancel: the query is gone, the page's stream ends cancelled
    click("cancel")
    until(lambda: backend() is None, 30, "the query to leave pg_stat_activity")
    until(lambda: driver.find_element(By.ID, "sse-state").text == "cancelled", 30,
          "the page's stream to end 'cancelled' (event: end)")
    until(lambda: not driver.find_elements(By.CSS_SELECTOR, row), 30, "the row to leave the table")
    until(lambda: registry() == [], 15, "GET /streams to be empty")
    assert driver.find_element(By.ID, "empty").is_displayed()
    ok("cancel: query gone from pg_stat_activity, SSE panel 'cancelled', table empty")

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    ok("no error in the browser console")
    failed = False
finally:
    if failed:
        shot = os.path.join(tempfile.gettempdir(), "pgspout-browser-test-failure.png")
        try:
            driver.save_screenshot(shot)
            print("browser_test: screenshot of the failure: " + shot, file=sys.stderr)
            print(driver.find_element(By.TAG_NAME, "body").text, file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - best effort while failing
            print("browser_test: no screenshot: %s" % e, file=sys.stderr)
    driver.quit()
    profile.cleanup()
