"""sage-eval's grid: the same per-seed episodes serially, on worker processes and on a local Ray cluster; resume;
summaries with Wilson intervals; the report; bad checkpoints and training seeds caught before the grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sage_gr00t.bench.stats import wilson_interval
from sage_gr00t.cli import eval as sage_eval
from sage_gr00t.paths import REPO_ROOT

POLICY = REPO_ROOT / "assets" / "policies" / "gr00t_compact"
# The shipped checkpoint on short episodes with small images: the policy's flow-matching noise is in play, so
# identical results need the per-episode seeding, and each episode stays well under a second.
GRID = ["--policy", str(POLICY), "--task", "pick_apple", "--episodes", "3", "--max-steps", "24", "--videos", "0",
        "--no-report", "--task-option", "image_height=64", "image_width=64", "settle_steps=20"]


def evaluate(out: Path, *extra: str, base: list[str] = GRID) -> list[dict]:
    assert sage_eval.main([*base, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


# Two seeds without and with the training randomization (its draws: layout, physics, latency, sensor noise).
PROFILES = ("--episodes", "2", "--randomization", "none", "train")


def per_seed(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Each cell's record without its wall-clock time (the one field a machine's load changes)."""
    return {(r["randomization"], r["seed"]): {k: v for k, v in r.items() if k != "wall_s"} for r in records}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> list[dict]:
    return evaluate(tmp_path_factory.mktemp("serial"), *PROFILES)


def test_serial_records_carry_every_metric(serial) -> None:
    assert [(r["randomization"], r["seed"]) for r in serial] == [
        ("none", 1000), ("none", 1001), ("train", 1000), ("train", 1001)]
    for r in serial:
        assert (r["task"], r["embodiment"], r["variant"]) == ("pick_apple", "sage_humanoid", "train")
        assert r["steps"] == 24 and r["arm_jerk"] > 0 and r["energy_j"] > 0  # the arm moved and did work
        assert r["safety_interventions"] is None  # a plain policy runs without the safety filter
        assert r["instruction"]
    # Noise and randomization differ per cell: no two episodes command the same arm trajectory.
    assert len({r["arm_jerk"] for r in serial}) == 4


def test_safety_flag_puts_the_filter_in_the_loop_and_counts_its_interventions(tmp_path) -> None:
    (filtered,) = evaluate(tmp_path, "--safety", "--episodes", "1", "--max-steps", "60")
    # The shipped policy's commands meet the filter's rate limits within an episode: clamped, and counted.
    assert isinstance(filtered["safety_interventions"], int) and filtered["safety_interventions"] > 0
    assert filtered["energy_j"] > 0


def test_two_workers_give_the_serial_per_seed_results(serial, tmp_path) -> None:
    parallel = evaluate(tmp_path, *PROFILES, "--workers", "2")
    assert per_seed(parallel) == per_seed(serial)


def test_a_local_ray_cluster_gives_the_serial_per_seed_results(serial, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = evaluate(tmp_path, *PROFILES, "--ray", "auto")
    finally:
        ray.shutdown()
    assert per_seed(on_ray) == per_seed(serial)


def test_an_episode_does_not_depend_on_the_one_before() -> None:
    """The policy's noise stream restarts at each episode's seed: seed 1000 after seed 1001 is seed 1000."""
    from sage_gr00t.evaluation import run_episode
    from sage_gr00t.policy.factory import make_policy
    from sage_gr00t.tasks import make_env

    env = make_env("pick_apple", image_height=64, image_width=64, settle_steps=20)
    try:
        policy = make_policy(str(POLICY), env)
        first = run_episode(env, policy, 1000, max_steps=16)
        run_episode(env, policy, 1001, max_steps=16)
        again = run_episode(env, policy, 1000, max_steps=16)
        # The noise does move the actions: the same observation on two noise seeds gives two chunks.
        obs, _ = env.reset(seed=1000)
        policy.seed(1)
        chunk_1 = policy.get_action(obs)
        policy.seed(2)
        chunk_2 = policy.get_action(obs)
    finally:
        env.close()
    assert again.arm_jerk == first.arm_jerk and again.energy_j == first.energy_j
    assert any((chunk_1[k] != chunk_2[k]).any() for k in chunk_1)


def test_a_second_run_resumes_and_runs_only_the_new_cells(tmp_path) -> None:
    first = evaluate(tmp_path, "--episodes", "2")
    grown = evaluate(tmp_path, "--episodes", "3")
    assert grown[:2] == first  # wall_s included: the finished cells were not run again
    assert [r["seed"] for r in grown] == [1000, 1001, 1002]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overall"]["episodes"] == 3


def test_a_folder_of_another_run_is_refused(tmp_path, capsys) -> None:
    evaluate(tmp_path, "--episodes", "1")
    capsys.readouterr()  # the first run's progress bar
    assert sage_eval.main([*GRID, "--out", str(tmp_path), "--episodes", "1", "--max-steps", "30"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a run with other settings (max_steps: 24 -> 30)" in err, err


def test_summary_intervals_and_report_over_a_grid_with_a_sweep(tmp_path) -> None:
    """Expert (deterministic, succeeds) on a friction sweep at 0 and 2x: two grid points, their curve in the
    summary and the report, one filmed episode with the command written on it."""
    base = ["--policy", "expert", "--task", "pick_apple", "--episodes", "2", "--sweep", "friction",
            "--sweep-levels", "0", "2", "--videos", "1", "--task-option", "image_height=48", "image_width=48"]
    records = evaluate(tmp_path, base=base)
    assert sorted((r["factor"], r["level"], r["seed"]) for r in records) == [
        ("friction", 0.0, 1000), ("friction", 0.0, 1001), ("friction", 2.0, 1000), ("friction", 2.0, 1001)]
    assert {r["randomization"] for r in records} == {"sweep"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    wins = sum(r["success"] for r in records)
    assert summary["overall"]["success_ci95"] == pytest.approx(list(wilson_interval(wins, 4)))
    curve = summary["sweep"]["friction"]["pick_apple"]
    assert [c["level"] for c in sorted(curve, key=lambda c: c["level"])] == [0.0, 2.0]
    for point in curve:
        k = sum(r["success"] for r in records if r["level"] == point["level"])
        assert point["successes"] == k and point["success_ci95"] == pytest.approx(list(wilson_interval(k, 2)))
    report = (tmp_path / "report.md").read_text()
    assert "plots/success.png" in report and "plots/sweep_friction.png" in report
    assert (tmp_path / "plots" / "sweep_friction.png").stat().st_size > 1000
    (video,) = (tmp_path / "videos").glob("*.mp4")
    assert video.name == "pick_apple_sage_humanoid_train_friction@0_1000.mp4" and video.name in report


def test_one_factor_changes_only_its_own_model_arrays() -> None:
    """A friction sweep level moves friction off nominal (more at 2x than at 1x) and leaves mass, light and gains."""
    from sage_gr00t.sim.randomization import DomainRandomizationConfig, one_factor
    from sage_gr00t.tasks import make_env

    train = DomainRandomizationConfig.from_yaml(profile="train")
    spread = {}
    for level in (0.0, 2.0):
        randomization = one_factor(train, "friction", level)
        env = make_env("pick_apple", image_height=32, image_width=32, randomization=randomization)
        nominal = env.randomizer._nominal
        try:
            ratios = []
            for seed in range(6):
                env.reset(seed=seed)
                ratios.append(env.model.geom_friction[0, 0] / nominal.geom_friction[0, 0])
                assert (env.model.body_mass == nominal.body_mass).all()
                assert (env.model.light_diffuse == nominal.light_diffuse).all()
                assert (env.model.actuator_gainprm == nominal.gainprm).all()
        finally:
            env.close()
        spread[level] = max(abs(r - 1.0) for r in ratios)
    assert spread[0.0] == 0.0
    assert 0.2 < spread[2.0] <= 0.4  # the training range is 0.8..1.2; twice as wide is 0.6..1.4


@pytest.mark.parametrize(("damage", "message"), [
    ("truncate", "Corrupted weights file"),
    ("no_weights", "Missing weights file"),
    ("bad_config", "invalid JSON"),
])
def test_a_damaged_checkpoint_is_one_line_before_the_grid(damage: str, message: str, tmp_path, capsys) -> None:
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(POLICY, checkpoint)
    weights = checkpoint / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no_weights":
        weights.unlink()
    else:
        (checkpoint / "config.json").write_text("{not json")
    code = sage_eval.main(["--policy", str(checkpoint), "--task", "pick_apple", "--episodes", "1",
                           "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("sage-eval: error: ") and message in err, err
    assert not (tmp_path / "out" / "results.json").exists()  # refused before anything ran


def test_seeds_in_the_training_range_are_a_warning(tmp_path, capsys) -> None:
    records = evaluate(tmp_path, "--seed-start", "998", "--episodes", "3", base=[
        "--policy", "expert", "--task", "pick_apple", "--max-steps", "5", "--videos", "0", "--no-report",
        "--task-option", "image_height=32", "image_width=32"])
    err = capsys.readouterr().err
    assert "warning: seeds 998..999 overlap the training seeds 0..999" in err
    assert [r["seed"] for r in records] == [998, 999, 1000]


def test_intervals_close_at_zero_and_one_and_the_report_plots_them(tmp_path) -> None:
    """All-success and all-failure grid points: the interval ends at exactly 1 / 0 (50/50 once missed 1 by 1e-16
    and broke the error bars), and report.md is written with its plot."""
    from sage_gr00t.bench.report import write_report

    for n in range(1, 80):
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
    records = [{"task": task, "embodiment": "sage_humanoid", "variant": "train", "randomization": "none",
                "seed": seed, "success": task == "pick_apple", "steps": 10, "wall_s": 0.1}
               for task in ("pick_apple", "sort_blocks") for seed in range(1000, 1050)]
    summary = sage_eval.summarize_grid(records)
    assert [p["success_ci95"][1] for p in summary["points"]] == [1.0, pytest.approx(0.0713, abs=1e-3)]
    report = write_report(tmp_path, summary, [])
    assert "| pick_apple / sage_humanoid / train / none | 50 | 50/50 (100%) | 93%-100% |" in report.read_text()
    assert (tmp_path / "plots" / "success.png").stat().st_size > 1000


def test_a_folder_written_before_a_setting_existed_still_resumes(tmp_path) -> None:
    """A setting added to the config since (at its default) or dropped from it since changes nothing; a
    setting with another value does."""
    from sage_gr00t.bench.results import ResultsStore

    ResultsStore.open(tmp_path, {"policy": "expert", "dropped": 1}).add({"seed": 1000})
    resumed = ResultsStore.open(tmp_path, {"policy": "expert", "added": False}, defaults={"added": False})
    assert resumed.records == [{"seed": 1000}]
    with pytest.raises(ValueError, match="added: False -> True"):
        ResultsStore.open(tmp_path, {"policy": "expert", "added": True}, defaults={"added": False})


@pytest.mark.parametrize("factor", ["colors", "camera", "lighting", "friction"])
def test_every_sweep_level_runs_on_the_same_layouts(factor: str) -> None:
    """A factor's levels differ in that factor only: the objects start where they do at level 0 (the draws
    before the layout do not depend on which ranges are zero), so a sweep's curve is paired over scenes."""
    from sage_gr00t.sim.randomization import DomainRandomizationConfig, one_factor
    from sage_gr00t.tasks import make_env

    train = DomainRandomizationConfig.from_yaml(profile="train")
    layouts = {}
    for level in (0.0, 2.0):
        env = make_env("sort_blocks", image_height=32, image_width=32, randomization=one_factor(train, factor, level))
        try:
            layouts[level] = [(env.reset(seed=seed), env.data.qpos.copy(), env.instruction)[1:] for seed in (3, 4)]
        finally:
            env.close()
    for (q0, words0), (q2, words2) in zip(layouts[0.0], layouts[2.0], strict=True):
        assert words0 == words2
        assert abs(q0 - q2).max() < (2e-3 if factor == "friction" else 1e-9)  # friction moves them as they settle


def test_sage_records_its_safety_filter_and_trust_convergence(tmp_path) -> None:
    """--controller sage: interventions counted by the bridge's own filter, and the camera's trust at the end with
    the time it took to settle there, in the records and in report.md's table."""
    (record,) = evaluate(tmp_path, base=[
        "--controller", "sage", "--policy", str(POLICY), "--task", "sort_blocks", "--episodes", "1", "--max-steps",
        "20", "--videos", "0", "--task-option", "image_height=96", "image_width=96"])
    assert isinstance(record["safety_interventions"], int)
    assert 0.0 < record["camera_trust"] <= 1.0
    assert 0.0 <= record["trust_settle_s"] <= record["steps"] / 20.0
    report = (tmp_path / "report.md").read_text()
    assert "camera trust | trust settle s |" in report and f"{record['camera_trust']:.2f}" in report
