"""Dreams from recorded experience (MimicGen-style), for a task that has no expert at all.

The scripted expert records a few source demonstrations with the normal recorder (a LeRobot dataset); the
dreams are then made for a task whose expert methods raise, from the dataset file alone, in a private
randomized simulator. Every kept dream is replayed open loop in a fresh simulator and must succeed there;
its provenance goes through the memory store to the panel's gallery data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.learn.mimic import (
    GRASP,
    RELEASE,
    MimicConfig,
    MimicDreamGenerator,
    dataset_recordings,
    parse_recordings,
    reduce_yaw,
    yaw_period,
)
from sage_gr00t.modality import action_key
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import Geom, GraspSpec, ObjectSpec, SceneAccess, make_env, open_box
from sage_gr00t_tasks.pick_apple import PickApple

IMAGE = 64
DEMOS = 3


class PickAppleWithoutExpert(PickApple):
    """pick_apple's scene, language and success predicate, and no expert: nothing may ask it how to act."""

    name = "pick_apple_without_expert"

    def expert_plan(self) -> list[Subtask]:
        raise RuntimeError("this task has no expert")

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        raise RuntimeError("this task has no expert")

    def place_height(self, object_name: str, target_name: str) -> float:
        raise RuntimeError("this task has no expert")


def record_demos(root: Path, task: str, n: int) -> None:
    """The project's recorder with the scripted expert (the only place an expert appears)."""
    from sage_gr00t.data.collect import CollectionState, collect_episodes
    from sage_gr00t.data.lerobot_dataset import DatasetLayout, GrootDatasetWriter
    from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert

    env = make_env(task, image_height=IMAGE, image_width=IMAGE)
    try:
        with GrootDatasetWriter(root, DatasetLayout.from_env(env), use_videos=False) as writer:
            collect_episodes(env, ScriptedExpert(env, ExpertConfig(plan_order="shuffled")), writer,
                             target_episodes=n, state=CollectionState(),
                             episode_extra={"task_name": task, "embodiment": "sage_humanoid", "variant": "train",
                                            "randomization": "none"})
    finally:
        env.close()


def assert_dream_succeeds_on_replay(env, dream) -> None:
    """Reset `env` (a fresh simulator) to the dream's seed and step its recorded actions open loop: the task's
    success predicate, false at the start, must accept the end."""
    env.reset(seed=dream.seed)
    assert not env.is_success()
    actions = {k: v for k, v in dream.episode.items() if k.startswith("action.")}
    assert set(actions) == {action_key(g) for g in ("left_arm", "right_arm", "left_hand", "right_hand")}
    for t in range(dream.steps):
        env.step({k: v[t] for k, v in actions.items()})
    assert env.is_success(), f"dream seed {dream.seed} does not succeed when replayed"


def test_yaw_symmetry_comes_from_the_declared_geometry() -> None:
    rgba = (1.0, 0.0, 0.0, 1.0)
    assert yaw_period(ObjectSpec("ball", (Geom("sphere", (0.03,), rgba),), kind="ball", role="pickable")) is None
    assert yaw_period(ObjectSpec("cube", (Geom("box", (0.02, 0.02, 0.02), rgba),), kind="b", role="pickable")) \
        == pytest.approx(math.pi / 2)
    assert yaw_period(ObjectSpec("brick", (Geom("box", (0.04, 0.02, 0.02), rgba),), kind="b", role="pickable")) \
        == pytest.approx(math.pi)
    # open_box's x walls run past the corners and its y walls stop at them: the same after a half turn only.
    assert yaw_period(ObjectSpec("bin", open_box(0.07, 0.04, 0.006, rgba), kind="bin", role="receptacle",
                                 movable=False)) == pytest.approx(math.pi)
    off_centre = ObjectSpec("mug", (Geom("cylinder", (0.03, 0.04), rgba), Geom("box", (0.005, 0.01, 0.02), rgba,
                                                                              pos=(0.04, 0, 0))),
                            kind="mug", role="pickable")
    assert yaw_period(off_centre) == pytest.approx(2 * math.pi)
    assert reduce_yaw(1.0, math.pi / 2) == pytest.approx(1.0 - math.pi / 2)
    assert reduce_yaw(2.5, None) == 0.0


def test_dreams_from_a_dataset_for_a_task_without_expert_succeed_when_replayed(tmp_path: Path) -> None:
    from sage_gr00t.memory.store import ExperienceStore
    from sage_gr00t.panel.sleep import stored_dream_gallery
    from sage_gr00t.sim.randomization import DomainRandomizationConfig

    root = tmp_path / "demos"
    record_demos(root, "pick_apple", DEMOS)
    with pytest.raises(RuntimeError, match="no expert"):
        PickAppleWithoutExpert().expert_plan()

    recordings = dataset_recordings(root)
    assert len(recordings) == DEMOS and all(r.object_poses for r in recordings)  # the recorder kept start poses
    sources = parse_recordings(recordings, PickAppleWithoutExpert)
    assert len(sources) == DEMOS
    for source in sources:  # one pick-and-place: a grasp of the apple, a release over the plate
        assert [(s.kind, s.reference) for s in source.segments] == [(GRASP, "apple"), (RELEASE, "plate")]
        assert source.segments[0].frames[1] < source.segments[1].frames[0]

    config = MimicConfig(task=PickAppleWithoutExpert.name, image_size=IMAGE, randomization="train")
    generator = MimicDreamGenerator(sources, config, task=PickAppleWithoutExpert)
    try:
        attempts = generator.generate(wanted=3, max_attempts=6)
    finally:
        generator.close()
    kept = [a.dream for a in attempts if a.dream is not None]
    stats = generator.stats[PickAppleWithoutExpert.name]
    print(f"\nmimic generation: kept {stats['kept']} / attempted {stats['attempted']}")
    assert stats == {"kept": len(kept), "attempted": len(attempts)} and len(kept) >= 2

    source_ids = {s.id for s in sources}
    randomization = DomainRandomizationConfig.from_yaml(profile="train")
    fresh = make_env(PickAppleWithoutExpert, randomization=randomization, image_height=IMAGE, image_width=IMAGE)
    try:
        for dream in kept:
            p = dream.provenance
            assert p["generator"] == "mimic" and p["success"] and p["seed"] == dream.seed
            assert set(p["source_episodes"]) <= source_ids
            assert [s["kind"] for s in p["segments"]] == [GRASP, RELEASE]
            assert np.linalg.norm(p["segments"][0]["delta_pos"]) > 1e-3  # the apple lies somewhere new
            assert p["augment"]["instruction"] in PickAppleWithoutExpert().instructions()
            assert dream.episode["images"].shape == (dream.steps, IMAGE, IMAGE, 3)
            assert dream.thumbnail.shape == (64, 64, 3)
            # Replayed open loop in a simulator that never saw the generator: the dream really succeeds.
            assert_dream_succeeds_on_replay(fresh, dream)
    finally:
        fresh.close()

    # Provenance in the memory store (every attempt, kept or not), read back after reopening.
    with ExperienceStore(tmp_path / "memory.db") as store:
        store.add_dreams([{"task": a.task, "seed": a.seed, "success": a.success, "steps": a.steps,
                           "provenance": a.provenance, "thumbnail": a.dream.thumbnail if a.dream else None}
                          for a in attempts], cycle=1)
    with ExperienceStore(tmp_path / "memory.db") as store:
        assert store.dream_stats() == {PickAppleWithoutExpert.name: stats}
        records = store.dreams(success=True)
        assert sorted(r.seed for r in records) == sorted(d.seed for d in kept)
        assert all(r.cycle == 1 and set(r.sources) <= source_ids and r.thumbnail.shape == (64, 64, 3)
                   for r in records)
        gallery = stored_dream_gallery(store)
    assert gallery["generation"] == {PickAppleWithoutExpert.name: stats}
    shown = [g for g in gallery["dreams"] if g["success"]]
    assert len(shown) == len(kept) and all(g["thumbnail"].startswith(b"\x89PNG") for g in shown)
    assert all(any(src in g["caption"] for src in g["sources"]) and g["sources"] for g in shown)
