#!/usr/bin/env python3
"""Drives the coordinator's web dashboard in headless Chromium, as a person would.

Run by an integration test once it has started a fleet and submitted a run:

  dashboard_check.py --base http://127.0.0.1:PORT --run RUN_ID --expect EXPECT.json \
      --release-file PATH --screenshots DIR [--token TOKEN]

It watches the run live, follows a shard's log over server-sent events (touching
--release-file lets that shard print its second line), filters the log, approves
the approval step, checks the finished Gantt chart against EXPECT.json and saves
screenshots at desktop and phone widths. Exit 0 when every check holds, 1 otherwise.
Needs selenium (scripts/setup puts it in $tools/browser-venv) and Debian's
chromium + chromium-driver.
"""
import argparse
import json
import pathlib
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}
WIDE, NARROW = (1400, 1000), (390, 844)

BARS_JS = """return Array.from(document.querySelectorAll('svg#gantt rect.bar')).map(b => ({
  step: b.getAttribute('data-step'), shard: b.getAttribute('data-shard'),
  mark: b.getAttribute('data-mark'), critical: b.classList.contains('critical')}));"""
LINES_JS = """return Array.from(document.querySelectorAll('#log div.line')).map(l => ({
  text: l.textContent, hidden: l.classList.contains('hidden')}));"""


class CheckFailed(Exception):
    pass


def log(msg):
    print(f"dashboard_check: {msg}", flush=True)


def wait_for(what, probe, timeout=60.0):
    """Polls probe() -> (ok, seen) until ok; fails naming what was expected and last seen.

    The run page swaps its live part every second, so probes re-query the DOM each
    time (mostly in one script call); an error from a swapped element is retried.
    """
    deadline, seen = time.monotonic() + timeout, None
    while True:
        try:
            ok, seen = probe()
            if ok:
                return seen
        except WebDriverException as e:
            seen = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        if time.monotonic() >= deadline:
            raise CheckFailed(f"waited {timeout:.0f}s for {what}; last seen: {seen}")
        time.sleep(0.25)


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def bars(d):
    return d.execute_script(BARS_JS)


def marks_of(d, step, shard=None):
    return [b["mark"] for b in bars(d) if b["step"] == step and (shard is None or b["shard"] == str(shard))]


def run_state(d):
    return d.execute_script("return document.body.getAttribute('data-run-state');")


def shot(d, shots, name):
    path = shots / name
    check(d.save_screenshot(str(path)), f"could not save screenshot {path}")
    log(f"screenshot {path}")


def no_horizontal_overflow(d, page):
    sw, iw = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];")
    check(sw <= iw + 1, f"{page} at {NARROW[0]}px overflows horizontally: "
                        f"documentElement.scrollWidth={sw} > innerWidth={iw}")


def login(d, base, token):
    d.get(f"{base}/login")
    field = wait_for("input[name=token] in form#login on /login", lambda: (
        (els := d.find_elements(By.CSS_SELECTOR, "form#login input[name=token]")) != [], els and els[0]))
    field.send_keys(token)
    field.submit()
    wait_for("form#login to go away after submitting the token", lambda: (
        not d.find_elements(By.CSS_SELECTOR, "form#login"), d.current_url))
    log("logged in")


def follow_log(d, base, run, spec, release_file, shots):
    step, shard, first, after = spec["step"], spec["shard"], spec["first"], spec["after_release"]
    d.get(f"{base}/runs/{run}/logs/{step}/{shard}")
    d.execute_script("window.__dashboardCheckNoReload = true;")

    def line_with(text):
        def probe():
            lines = d.execute_script(LINES_JS)
            hit = [line for line in lines if text in line["text"]]
            return bool(hit), (hit[0] if hit else [line["text"] for line in lines][-5:])
        return probe

    wait_for(f"a #log div.line containing {first!r}", line_with(first))
    pathlib.Path(release_file).touch()
    log(f"first line seen; touched {release_file}")
    wait_for(f"a #log div.line containing {after!r} after the release (live, no reload)",
             line_with(after))
    check(d.execute_script("return window.__dashboardCheckNoReload === true;"),
          "the log page reloaded to show the new line; it should append it live over SSE")
    # A word of the second line that the first line lacks, so the filter must split them.
    words = sorted((w for w in after.split() if w not in first), key=len, reverse=True)
    needle = words[0] if words else after
    d.find_element(By.CSS_SELECTOR, "input#search").send_keys(needle)

    def filtered():
        lines = d.execute_script(LINES_JS)
        f = [x["hidden"] for x in lines if first in x["text"] and after not in x["text"]]
        a = [x["hidden"] for x in lines if after in x["text"]]
        return f and all(f) and a and not any(a), {"first hidden": f, "after_release hidden": a}

    wait_for(f"searching {needle!r} to hide the {first!r} line and keep the {after!r} line",
             filtered, timeout=10)
    log(f"search {needle!r} filters the log")
    wait_for("#log[data-stream=ended]", lambda: (
        (s := d.find_element(By.CSS_SELECTOR, "#log").get_attribute("data-stream")) == "ended", s))
    shot(d, shots, "log-wide.png")


def approve(d, base, run, step):
    d.get(f"{base}/runs/{run}")
    sel = f"form.approval[data-step='{step}']"
    wait_for(f"{sel} on the run page", lambda: (bool(d.find_elements(By.CSS_SELECTOR, sel)), run_state(d)))
    # The live part may be swapped between finding the button and clicking it: retry then.
    wait_for(f"a click on the approve button of {sel}", lambda: (
        d.find_element(By.CSS_SELECTOR, f"{sel} button[name=decision][value=approve]").click() or True, None),
        timeout=15)
    log(f"approved {step}")

    def approved():
        gone = not d.find_elements(By.CSS_SELECTOR, sel)
        marks = marks_of(d, step)
        ok = gone and marks and all(m in ("running", "succeeded") for m in marks)
        return ok, {"form present": not gone, "marks": marks}

    wait_for(f"{step} bars marked running/succeeded and its approval form gone", approved)


def check_gantt(d, expect):
    want = {(s["step"], str(s["shard"])): s["mark"] for s in expect["shards"]}
    got = bars(d)
    problems = []
    for (step, shard), mark in want.items():
        seen = [b["mark"] for b in got if (b["step"], b["shard"]) == (step, shard)]
        if seen != [mark]:
            problems.append(f"{step}/{shard}: expected mark {mark!r}, saw {seen or 'no bar'}")
    extra = sorted({f"{b['step']}/{b['shard']}" for b in got if (b["step"], b["shard"]) not in want})
    if extra:
        problems.append(f"bars not expected: {extra}")
    if len(got) != len(want):
        problems.append(f"expected {len(want)} rect.bar, saw {len(got)}")
    if not any(b["critical"] for b in got):
        problems.append("no rect.bar has class critical")
    check(not problems, "Gantt chart mismatches:\n  " + "\n  ".join(problems))
    log(f"Gantt chart matches: {len(got)} bars, {sum(b['critical'] for b in got)} critical")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--expect", required=True, type=pathlib.Path)
    ap.add_argument("--release-file", required=True)
    ap.add_argument("--screenshots", required=True, type=pathlib.Path)
    ap.add_argument("--token")
    a = ap.parse_args()
    base, run, expect = a.base.rstrip("/"), a.run, json.loads(a.expect.read_text())
    a.screenshots.mkdir(parents=True, exist_ok=True)

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDE[0]},{WIDE[1]}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        d.set_page_load_timeout(60)
        if a.token:
            login(d, base, a.token)
        spec = expect["log"]
        d.get(f"{base}/runs/{run}")
        wait_for(f"bar {spec['step']}/{spec['shard']} marked running on the live run page", lambda: (
            (m := marks_of(d, spec["step"], spec["shard"])) == ["running"], {"marks": m, "run": run_state(d)}))
        shot(d, a.screenshots, "run-live-wide.png")
        follow_log(d, base, run, spec, a.release_file, a.screenshots)
        approve(d, base, run, expect["approval_step"])
        state = wait_for("a terminal data-run-state on the run page", lambda: (
            (s := run_state(d)) in TERMINAL, s), timeout=120)
        log(f"run {run} ended {state}")
        check_gantt(d, expect)
        shot(d, a.screenshots, "run-wide.png")
        pages = [("runs", "/", "table#runs"), ("runners", "/runners", "table#runners"),
                 ("cache", "/cache", "section#cache")]
        for name, path, sel in pages:
            d.get(base + path)
            wait_for(f"{sel} on {path}", lambda: (bool(d.find_elements(By.CSS_SELECTOR, sel)), d.title))
            if name == "runs":
                row = f"table#runs tr.run[data-run='{run}']"
                wait_for(f"{row} with data-state={state}", lambda: (
                    (s := [r.get_attribute("data-state") for r in d.find_elements(By.CSS_SELECTOR, row)])
                    == [state], s))
            shot(d, a.screenshots, f"{name}-wide.png")
        d.set_window_size(*NARROW)
        for name, path in (("run", f"/runs/{run}"), ("runs", "/")):
            d.get(base + path)
            no_horizontal_overflow(d, path)
            shot(d, a.screenshots, f"{name}-narrow.png")
        log("OK")
        return 0
    except (CheckFailed, WebDriverException) as e:
        log(f"FAIL: {e}")
        try:
            d.save_screenshot(str(a.screenshots / "failure.png"))
            log(f"page at failure: {d.current_url} (screenshot failure.png)")
        except WebDriverException:
            pass
        return 1
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
