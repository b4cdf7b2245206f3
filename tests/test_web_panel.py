"""Web panel end to end: sage-panel in a subprocess, driven by real headless Chromium (Playwright).

Types "put the apple on the plate" on pick_apple seed 1000 (the shipped policy succeeds there in ~55 control
steps), clicks Run, waits for the page to report success, checks trust values moved, exercises the e-stop
button (it only engages; releasing takes the confirmed release step) and the speed slider, and saves a
screenshot (tmp_path and outputs/panel/web_panel.png).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
COMMAND = "put the apple on the plate"
SEED = 1000
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
    pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing"),
]


@pytest.fixture()
def panel_url():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sage_gr00t.cli.panel", "--task", "pick_apple", "--seed", str(SEED), "--port", "0",
         "--front-view-every", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    lines = []
    url = None
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("SAGE panel: "):
            url = line.split()[2]
    if url is None:
        proc.kill()
        pytest.fail("panel did not start:\n" + "".join(lines))
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # never block its prints
    drain.start()
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the script stops the control loop and closes the simulator
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain.join(10)
        assert proc.returncode == 0, "".join(lines)[-3000:]


def api_state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state?history=0", timeout=30) as reply:
        return json.loads(reply.read())


def trust_values(page) -> dict[str, float]:
    return page.eval_on_selector_all(
        "[id^=trust-], [id^=component-]", "els => Object.fromEntries(els.map(e => [e.id, Number(e.dataset.value)]))")


def test_web_panel_runs_a_command_to_success(panel_url, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(panel_url)
            expect(page.locator("#status")).to_have_text("idle", timeout=60_000)
            expect(page.locator("#trust-camera")).to_be_visible(timeout=30_000)
            page.wait_for_function("document.getElementById('camera').naturalWidth > 0", timeout=30_000)
            before = trust_values(page)
            assert {"trust-camera", "trust-proprioception", "trust-memory", "component-sage_execution"} <= set(before)

            page.fill("#command", "")
            page.type("#command", COMMAND)
            page.click("#run")
            expect(page.locator("#plan")).to_contain_text("pick up the apple and place it on the plate",
                                                          timeout=120_000)
            expect(page.locator("#status")).to_have_text("succeeded", timeout=300_000)
            expect(page.locator("#success")).to_contain_text("task succeeded")
            expect(page.locator("#message")).to_contain_text("Task succeeded")
            page.wait_for_timeout(600)  # one more poll: bars and plot from the final state
            after = trust_values(page)
            changed = {k: (before[k], after[k]) for k in before if abs(after.get(k, before[k]) - before[k]) > 1e-3}
            assert changed, f"trust values on the page did not change: {before} -> {after}"
            assert page.locator("#plot polyline").count() >= 3  # trust history lines
            state = api_state(panel_url)
            assert state["success"] and state["command"] == COMMAND and state["seed"] == SEED
            shot = tmp_path / "web_panel.png"
            page.screenshot(path=str(shot), full_page=True)
            out = ROOT / "outputs/panel/web_panel.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(shot.read_bytes())

            # Emergency stop from the page: the safety filter holds the robot. Pressing it again keeps it
            # engaged (not a toggle); releasing takes "Release e-stop…" and then "Confirm release".
            page.click("#estop")
            expect(page.locator("#status")).to_have_text("estop", timeout=30_000)
            expect(page.locator("#estop")).to_have_text("E-stop engaged", timeout=30_000)
            assert api_state(panel_url)["safety"]["estop"]
            page.click("#estop")
            page.wait_for_timeout(800)
            assert api_state(panel_url)["safety"]["estop"]
            page.click("#release")
            expect(page.locator("#release-confirm")).to_be_visible(timeout=30_000)
            assert api_state(panel_url)["safety"]["estop"]
            page.click("#release-confirm")
            expect(page.locator("#status")).to_have_text("stopped", timeout=30_000)
            assert not api_state(panel_url)["safety"]["estop"]
            expect(page.locator("#release")).to_be_hidden(timeout=30_000)

            # Speed slider -> the safety filter's speed scale.
            page.locator("#speed").fill("40")
            expect(page.locator("#speed-value")).to_have_text("40%", timeout=30_000)
            deadline = time.monotonic() + 30
            while api_state(panel_url)["safety"]["speed_percent"] != 40 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert api_state(panel_url)["safety"]["speed_percent"] == 40

            # An empty command: a clear message, the robot keeps holding.
            page.fill("#command", "")
            page.click("#run")
            expect(page.locator("#message")).to_contain_text("Type a command first", timeout=30_000)
        finally:
            browser.close()
    print(f"\nweb panel: {state['message']}; trust changed: {changed}; screenshot {out}")
