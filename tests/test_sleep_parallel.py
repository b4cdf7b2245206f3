"""Sleep cycles fanned out over worker processes give the serial results, seed for seed.

* dream attempts: `generate_dreams` over 2 workers keeps the same dreams (seeds, provenance, every frame and
  action) as the generator's own serial loop, and leaves the generator's seed counter and stats as it would;
* wake and held-out episodes: a worker loads the live weights from a checkpoint folder on the CPU, and its
  episodes (the bare policy, and commanded through SAGE) are those of the in-memory policy in this process;
* `sage-sleep --workers 2` runs two whole cycles (SAGE wake episodes -> store -> dreams -> fine-tune ->
  evaluation) and writes its report, plot and progress lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sage_gr00t.learn.mimic import MimicConfig, MimicDreamGenerator, dataset_recordings, parse_recordings
from sage_gr00t.learn.sleep import (
    EpisodeJob,
    EpisodeSpec,
    SleepCycleConfig,
    SleepCycleRunner,
    generate_dreams,
    record_rollout,
    run_episodes,
)
from sage_gr00t.parallel import FanOut

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "assets/policies/gr00t_compact"
IMAGE = 64
TASK = "push_block"  # short demonstrations (about 60 steps): quick to record and to dream from
pytestmark = pytest.mark.skipif(not (POLICY.is_dir() and (ROOT / "assets/planner").is_dir()),
                                reason="shipped checkpoints missing")


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_mimic import record_demos

    root = tmp_path_factory.mktemp("parallel_demos") / "demos"
    record_demos(root, TASK, 2)
    return root


def _same_attempts(a: list, b: list) -> None:
    assert [(x.seed, x.success, x.steps) for x in a] == [(x.seed, x.success, x.steps) for x in b]
    assert [x.provenance for x in a] == [x.provenance for x in b]
    for x, y in zip(a, b, strict=True):
        if x.dream is None:
            assert y.dream is None
            continue
        assert set(x.dream.episode) == set(y.dream.episode)
        for key, value in x.dream.episode.items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, y.dream.episode[key]), key
            else:
                assert value == y.dream.episode[key], key


def test_dreams_over_two_workers_are_the_serial_ones(demos: Path) -> None:
    sources = parse_recordings(dataset_recordings(demos), TASK)
    assert sources
    config = MimicConfig(task=TASK, image_size=IMAGE)
    generators = [MimicDreamGenerator(sources, config) for _ in range(3)]
    try:
        # A scene seed first (where a wake episode failed), then fresh seeds, until 2 dreams are kept.
        serial = generators[0].generate(2, 6, scene_seeds=[11])
        in_process = generate_dreams(generators[1], 2, 6, [11], FanOut())
        parallel = generate_dreams(generators[2], 2, 6, [11], FanOut(workers=2))
    finally:
        for g in generators:
            g.close()
    assert sum(a.success for a in serial) >= 1, "no dream kept: the comparison would prove little"
    assert serial[0].seed == 11
    _same_attempts(serial, in_process)
    _same_attempts(serial, parallel)
    assert generators[0].next_seed == generators[1].next_seed == generators[2].next_seed
    assert generators[0].stats == generators[1].stats == generators[2].stats


def test_worker_episodes_from_a_checkpoint_are_those_of_the_live_policy(tmp_path: Path, demos: Path) -> None:
    from sage_gr00t.learn.mimic import _make_env
    from sage_gr00t.policy.gr00t import load_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    policy = load_policy(POLICY, embodiment="sage_humanoid")
    # Move the weights off the shipped ones (a live policy after a kept cycle is not its folder).
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    generator = MimicDreamGenerator(parse_recordings(dataset_recordings(demos), TASK),
                                    MimicConfig(task=TASK, image_size=IMAGE))
    runner = SleepCycleRunner(policy, generator, SleepCycleConfig(out=str(tmp_path / "sleep"), eval_episodes=2,
                                                                  eval_max_steps=12, eval_image_size=IMAGE),
                              plan=FanOut(workers=2))
    env = _make_env(TASK, "sage_humanoid", "train", "none", IMAGE)
    seeds = [5_000_003, 5_000_004, 5_000_005]
    try:
        checkpoint = runner.live_checkpoint()
        here = [record_rollout(env, policy, s, 12) for s in seeds]
        spec = EpisodeSpec(TASK, image_size=IMAGE, max_steps=12)
        jobs = [EpisodeJob(checkpoint, s, record=True) for s in seeds]
        serial, parallel = run_episodes(spec, jobs, FanOut()), run_episodes(spec, jobs, FanOut(workers=2))
        sage_spec = EpisodeSpec(TASK, image_size=IMAGE, max_steps=12, controller="sage")
        sage_serial = run_episodes(sage_spec, jobs[:2], FanOut())
        sage_parallel = run_episodes(sage_spec, jobs[:2], FanOut(workers=2))
        in_memory = runner._evaluate(policy, None)
        in_workers = runner._evaluate_in_workers(policy.model, checkpoint, None)
    finally:
        env.close()
        runner.close()
        generator.close()
        torch.set_num_threads(threads)
    for episodes in (serial, parallel):
        for a, b in zip(here, episodes, strict=True):
            assert (a.seed, a.success, a.steps) == (b.seed, b.success, b.steps)
            assert set(a.frames) == set(b.frames)
            for key in a.frames:
                assert np.array_equal(a.frames[key], b.frames[key]), key
    # The seeds differ, so the episodes do: equality above is not two empty recordings agreeing.
    assert not np.array_equal(here[0].frames["action.right_arm"], here[1].frames["action.right_arm"])
    for a, b in zip(sage_serial, sage_parallel, strict=True):
        assert a.meta["controller"] == "sage" and a.meta["command"] and a.experiences
        assert a.steps == b.steps and a.meta["subtasks"] == b.meta["subtasks"]
        for key in a.frames:
            assert np.array_equal(a.frames[key], b.frames[key]), key
        assert [e.salience for e in a.experiences] == [e.salience for e in b.experiences]
    assert in_memory.successes == in_workers.successes and in_memory.seeds == in_workers.seeds


def test_sage_sleep_runs_whole_cycles_over_two_workers(tmp_path: Path, demos: Path) -> None:
    out = tmp_path / "sleep"
    argv = [sys.executable, "-m", "sage_gr00t.cli.sleep", "--task", TASK, "--policy", str(POLICY),
            "--datasets", str(demos), "--memory", str(tmp_path / "memory.db"), "--cycles", "2",
            "--wake-episodes", "2", "--wake-max-steps", "16", "--workers", "2", "--progress", str(out / "times"),
            "--sleep.out", str(out), "--sleep.dreams", "1", "--sleep.max-dream-attempts", "3", "--sleep.steps", "3",
            "--sleep.batch-size", "4", "--sleep.eval-episodes", "2", "--sleep.eval-max-steps", "12",
            "--sleep.eval-image-size", str(IMAGE), "--mimic.image-size", str(IMAGE), "--num-threads", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [c["cycle"] for c in lines] == [1, 2] and all(c["wake_episodes"] == 2 for c in lines)
    report = json.loads((out / "sleep_report.json").read_text())["cycles"]
    assert [c["decision"] in ("kept", "rolled_back") for c in report] == [True, True]
    assert report[0]["wake"] == {"controller": "sage", "episodes": 2, "successes": lines[0]["wake_successes"]}
    assert len(report[0]["after"]["seeds"]) == 2 and report[0]["steps"] == 3
    assert (out / "sleep_report.png").stat().st_size > 0
    times = (out / "times").read_text()
    for phase in ("wake: 2 episodes (sage)", "dream", "evaluate_before", "train", "evaluate_after", "live curve"):
        assert phase in times, times
    from sage_gr00t.memory.store import ExperienceStore

    with ExperienceStore(tmp_path / "memory.db") as store:
        wake = [e for e in store.episodes(task=TASK) if e.meta.get("wake")]
        assert len(wake) == 4 and all(e.n_experiences > 0 and e.has_trajectory for e in wake)
        assert [e.meta["seed"] for e in wake] == [3_000_000, 3_000_001, 3_000_002, 3_000_003]
