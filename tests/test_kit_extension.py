"""The real Omniverse Kit kernel loads exts/sage_gr00t headless, drives the controller, and unloads it cleanly.

Kit runs in a subprocess (`app.shutdown()` ends the process). The driver script prints JSON lines that the
test parses: after startup, after N `app.update()` ticks, and after `set_extension_enabled_immediate(...,
False)` followed by more updates (the update callback must not fire any more).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTS = ROOT / "exts"
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
UPDATES = 12
COMMAND = "put the apple on the plate"

needs_kit = pytest.mark.skipif(importlib.util.find_spec("omni.kit_app") is None,
                               reason="omni.kit_app not importable (pip install -e '.[kit]' installs omniverse-kit)")
needs_checkpoints = pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing")

DRIVER = textwrap.dedent("""
    import json, sys
    from omni.kit_app import KitApp

    exts, updates, command = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = KitApp()
    app.startup(["--no-window", "--ext-folder", exts, "--enable", "sage_gr00t",
                 "--/exts/sage_gr00t/realtime=false", "--/exts/sage_gr00t/dream_episodes=0",
                 f"--/exts/sage_gr00t/command={command}"])
    import omni.kit.app
    import sage_gr00t.omni.extension as ext_mod  # the module Kit loaded

    def emit(**kw):
        print("JSON " + json.dumps(kw), flush=True)

    mgr = omni.kit.app.get_app().get_extension_manager()
    ext = ext_mod.get_extension()
    emit(event="started", enabled=mgr.is_extension_enabled("sage_gr00t"), stats=ext_mod.stats(),
         subscriptions=ext.subscription_count, cls=type(ext).__name__, running=ext is not None)
    before = ext_mod.stats()["ticks"]
    for _ in range(updates):
        app.update()
    state = ext.viewmodel.state(history=False)
    emit(event="ticked", stats=ext_mod.stats(), ticks=ext_mod.stats()["ticks"] - before, step=state["step"],
         status=state["status"], plan=state["plan"], message=state["message"],
         trust=state["trust"]["sensors"], subscriptions=ext.subscription_count)
    del ext, state  # Kit checks that nothing outside holds the extension object after on_shutdown
    mgr.set_extension_enabled_immediate("sage_gr00t", False)
    after = ext_mod.stats()
    for _ in range(5):
        app.update()
    emit(event="disabled", enabled=mgr.is_extension_enabled("sage_gr00t"), after=after, later=ext_mod.stats(),
         instance_gone=ext_mod.get_extension() is None)
    app.shutdown()
""")


def test_drivers_pacer_and_subscriptions_without_kit() -> None:
    # Outside Kit omni.ext is not importable: these imports prove the package and its drivers don't need it.
    import sage_gr00t.omni  # noqa: F401
    from sage_gr00t.omni.drivers import Pacer, Subscription, event_dt

    pacer = Pacer(20.0)  # 60 Hz frames -> a control tick every third frame
    assert [pacer.due(1 / 60) for _ in range(9)] == [0, 0, 1] * 3
    assert pacer.due(1.0) == 1 and pacer.due(0.0) == 1  # a slow frame: one tick now, one owed, no burst
    assert pacer.due(0.0) == 0
    assert all(Pacer(20.0, realtime=False).due(0.0) == 1 for _ in range(3))
    assert event_dt((0.02,)) == 0.02 and event_dt(({"dt": 0.5},)) == 0.5 and event_dt(()) == pytest.approx(1 / 60)
    released = []
    sub = Subscription("x", lambda: released.append(1), handle=object())
    assert sub.active
    sub.release()
    sub.release()
    assert released == [1] and not sub.active


@needs_kit
@needs_checkpoints
def test_kit_loads_drives_and_unloads_the_extension(tmp_path) -> None:
    driver = tmp_path / "kit_driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMNI_KIT_ACCEPT_EULA": "yes", "OMNI_KIT_ALLOW_ROOT": "1"}
    proc = subprocess.run([sys.executable, str(driver), str(EXTS), str(UPDATES), COMMAND], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    lines = {}
    for line in proc.stdout.splitlines():
        if line.startswith("JSON "):
            record = json.loads(line[5:])
            lines[record["event"]] = record
    assert set(lines) == {"started", "ticked", "disabled"}, out[-4000:]

    started = lines["started"]
    assert started["enabled"] and started["running"] and started["cls"] == "SageGr00tExtension"
    stats = started["stats"]
    assert stats["startups"] == 1 and stats["driver"] == "kit.update" and stats["panel"] == "unavailable"
    assert started["subscriptions"] == stats["open_subscriptions"] == 1
    assert {"SageGr00t/PickApple-v0", "SageGr00t/SortBlocks-v0"} <= set(stats["tasks"])  # embedded tasks
    assert "SageGr00t-PickApple-v0" in stats["tasks"]  # Isaac Lab tasks

    ticked = lines["ticked"]
    assert ticked["ticks"] == UPDATES, ticked  # realtime=false: one control step per app.update()
    assert ticked["stats"]["errors"] == 0, out[-4000:]
    assert ticked["step"] >= UPDATES and ticked["status"] == "running", ticked["message"]
    assert [(p["object"], p["target"]) for p in ticked["plan"]] == [("apple", "plate")]
    assert {"camera", "proprioception", "memory"} <= set(ticked["trust"])

    disabled = lines["disabled"]
    assert not disabled["enabled"] and disabled["instance_gone"]
    after, later = disabled["after"], disabled["later"]
    assert after["shutdowns"] == 1 and after["open_subscriptions"] == 0
    assert later["callbacks"] == after["callbacks"] and later["ticks"] == after["ticks"]  # no callback fires

    assert out.count("omni.ui is unavailable") == 1, out[-4000:]
    assert "extension object is still alive" not in out, out[-4000:]
    assert "Failed to startup python extension" not in out and "Traceback" not in out, out[-4000:]
    print(f"\nkit: {ticked['ticks']} control steps from {UPDATES} updates; status {ticked['status']}; "
          f"exit code {proc.returncode}")
