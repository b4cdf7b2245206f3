"""Sleep cycles that keep only improvements: a real fine-tune of a copy of the shipped policy on mimic dreams
plus replayed demonstrations, a paired evaluation on held-out seeds, and the keep / roll-back decision.

* a cycle whose candidate is worse is rolled back: the live weights are the previous ones bit for bit;
* a cycle that is kept loads the candidate into the live policy and writes it as a complete checkpoint;
* a process SIGKILLed in the middle of a cycle leaves the memory store, its stored dreams and the live
  checkpoint folder intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sage_gr00t.learn.mimic import MimicConfig, MimicDreamGenerator, dataset_recordings, parse_recordings
from sage_gr00t.learn.sleep import SleepCycleConfig, SleepCycleRunner, dataset_episodes

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "assets/policies/gr00t_compact"
IMAGE = 64
pytestmark = pytest.mark.skipif(not POLICY.is_dir(), reason="shipped checkpoint missing")


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two pick_apple demonstrations from the normal recorder, shared by this module's tests."""
    from test_mimic import record_demos

    root = tmp_path_factory.mktemp("sleep_demos") / "demos"
    record_demos(root, "pick_apple", 2)
    return root


def small_cycle(out: Path, **overrides: object) -> SleepCycleConfig:
    values = dict(out=str(out), dreams=1, max_dream_attempts=3, replay_episodes=2, steps=4, batch_size=4,
                  eval_episodes=1, eval_max_steps=24, eval_image_size=IMAGE)
    values.update(overrides)
    return SleepCycleConfig(**values)  # type: ignore[arg-type]


def test_a_worse_cycle_rolls_back_bit_for_bit_and_a_kept_one_is_checkpointed(tmp_path: Path, demos: Path) -> None:
    from sage_gr00t.policy.gr00t import load_policy
    from sage_gr00t.policy.gr00t.checkpoint import read_state_dict, upstream_names

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sources = parse_recordings(dataset_recordings(demos), "pick_apple")
    generator = MimicDreamGenerator(sources, MimicConfig(task="pick_apple", image_size=IMAGE))
    policy = load_policy(POLICY, embodiment="sage_humanoid")
    previous = {k: v.clone() for k, v in policy.model.state_dict().items()}
    out = tmp_path / "sleep"
    # A harmful step size: the candidate's held-out loss rises, success cannot rise in 24 steps -> roll back.
    runner = SleepCycleRunner(policy, generator, small_cycle(out, lr=0.5), replay=dataset_episodes(demos))
    try:
        worse = runner.run()
        assert worse["decision"] == "rolled_back", worse
        assert worse["max_weight_change"] > 0  # the candidate really was trained
        assert worse["after"]["loss"] > worse["before"]["loss"]
        live = policy.model.state_dict()
        assert all(torch.equal(live[k], v) for k, v in previous.items()), "rollback changed the live weights"
        assert not (out / "cycle-001").exists() and not (out / "live.json").exists()

        # Any change counts as "not worse" here: the keep path (load into the live model, checkpoint on disk).
        runner.config = small_cycle(out, lr=1e-4, success_tolerance=1.0, loss_tolerance=1e9)
        kept = runner.run()
    finally:
        runner.close()
        generator.close()
        torch.set_num_threads(threads)
    assert kept["decision"] == "kept" and kept["cycle"] == 2
    live = policy.model.state_dict()
    assert any(not torch.equal(live[k], v) for k, v in previous.items())
    on_disk = read_state_dict(Path(kept["checkpoint"]))
    assert all(torch.equal(on_disk[k], v.float()) for k, v in upstream_names(policy.model).items())
    assert json.loads((out / "live.json").read_text())["cycle"] == 2
    report = json.loads((out / "sleep_report.json").read_text())
    assert [c["decision"] for c in report["cycles"]] == ["rolled_back", "kept"]
    assert (out / "sleep_report.png").stat().st_size > 0 and (out / "cycle-002.json").is_file()


CHILD = r'''
import sys, os
from pathlib import Path
import torch
torch.set_num_threads(1)
from sage_gr00t.learn.mimic import MimicConfig, MimicDreamGenerator, dataset_recordings, parse_recordings
from sage_gr00t.learn.sleep import SleepCycleConfig, SleepCycleRunner, dataset_episodes
from sage_gr00t.memory.store import ExperienceStore
from sage_gr00t.policy.gr00t import load_policy

demos, policy_dir, store_path, out, phases = map(Path, sys.argv[1:6])

def phase(name):
    with phases.open("a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())

store = ExperienceStore(store_path)
generator = MimicDreamGenerator(parse_recordings(dataset_recordings(demos), "pick_apple"),
                                MimicConfig(task="pick_apple", image_size=64))
policy = load_policy(policy_dir, embodiment="sage_humanoid")
config = SleepCycleConfig(out=str(out), dreams=1, max_dream_attempts=3, replay_episodes=2, steps=10**7,
                          batch_size=4, eval_episodes=1, eval_max_steps=8, eval_image_size=64)
SleepCycleRunner(policy, generator, config, store=store, replay=dataset_episodes(demos), on_phase=phase).run()
'''


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_store_and_the_live_policy_survive_a_kill_during_a_sleep_cycle(tmp_path: Path, demos: Path) -> None:
    import numpy as np

    from sage_gr00t.memory.snarc import Experience, SNARCScorer
    from sage_gr00t.memory.store import ExperienceStore

    live = tmp_path / "live_policy"
    shutil.copytree(POLICY, live)
    before_policy = digest(live)
    store_path = tmp_path / "memory.db"
    scorer = SNARCScorer()
    with ExperienceStore(store_path) as store:  # memory from an earlier day: one failed episode, one old dream
        eid = store.begin_episode(task="pick_apple", meta={"seed": 7})
        store.add(scorer.annotate(Experience(eid, 0, "pick_apple", np.zeros(18), np.zeros(18), success=False)))
        store.end_episode(eid, False)
        store.add_dreams([{"task": "pick_apple", "seed": 1, "success": True, "steps": 3,
                           "provenance": {"source_episodes": ["old#0"]}, "thumbnail": np.zeros((8, 8, 3), np.uint8)}])
        before_stats = store.stats()
    phases = tmp_path / "phases.txt"
    out = tmp_path / "sleep"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(demos), str(live), str(store_path), str(out),
                             str(phases)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Wait (a generous guard, not a timing) until the cycle is training: dreams are stored by then.
        deadline = time.monotonic() + 400
        while "train" not in (phases.read_text().split() if phases.exists() else []):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the sleep cycle never reached training"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert phases.read_text().split() == ["select", "dream", "evaluate_before", "train"]
    assert digest(live) == before_policy  # the live checkpoint folder is untouched
    assert not (out / "live.json").exists() and not list(out.glob("cycle-*"))  # no half-written checkpoint
    with ExperienceStore(store_path) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        after_stats = store.stats()
        for key in ("episodes_complete", "experiences", "episodes_by_task"):
            assert after_stats[key] == before_stats[key]
        dreams = store.dreams()
        assert dreams[-1].sources == ["old#0"] and dreams[-1].thumbnail.shape == (8, 8, 3)
        cycle_dreams = [d for d in dreams if d.cycle == 1]
        assert cycle_dreams and cycle_dreams[-1].seed == 7  # the first attempt: where the stored failure happened
        assert all(d.provenance["generator"] == "mimic" for d in cycle_dreams)


@pytest.mark.parametrize(("argv", "message"), [
    (["--cycles", "0", "--datasets", "d"], "--cycles must be >= 1"),
    (["--wake-episodes", "2", "--datasets", "d"], "--wake-episodes needs --memory"),
    ([], "Give source demonstrations"),
])
def test_sage_sleep_flags_are_checked_before_anything_loads(argv: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sage_gr00t.cli.sleep import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_session_with_mimic_dreams_dreams_from_its_dataset_and_stores_provenance(tmp_path: Path,
                                                                                   demos: Path) -> None:
    from sage_gr00t.learn.mimic import MimicDreamGenerator
    from sage_gr00t.session import SessionConfig, build_session

    config = SessionConfig(task="pick_apple", controller="sage", policy="expert", memory_path=str(tmp_path / "m.db"),
                           dream_episodes=1, dream_source="mimic", dream_datasets=[str(demos)], dream_image_size=IMAGE,
                           task_options={"image_height": IMAGE, "image_width": IMAGE})
    session = build_session(config)
    try:
        assert isinstance(session.dreamer, MimicDreamGenerator)
        summary = session.bridge.sleep_cycle(force=True)  # what the panel's "Sleep now" runs
        dreams = list(session.bridge.dreams)
        stored = session.store.dreams()
    finally:
        session.close()
    assert summary is not None and len(summary["dreams"]) == len(dreams) == 1
    assert dreams[0].provenance["generator"] == "mimic"
    assert set(dreams[0].provenance["source_episodes"]) <= {f"{demos.name}#0", f"{demos.name}#1"}
    assert [d.seed for d in stored if d.success] == [dreams[0].seed]  # every attempt, kept or not, is stored
