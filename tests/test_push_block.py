"""push_block: a task whose motion is a push, not a grasp, and MimicGen-style dreams made from its demonstrations.

The scripted expert pushes the block onto the pad in whichever direction the pad lies; three of its episodes,
written by the normal recorder, are parsed into push segments (from the robot's contacts with the block, no
grasp) and multiplied into dreams in a randomized simulator, each dream's push turned to head at the new pad.
Every kept dream must succeed again when replayed open loop in a fresh simulator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_mimic import assert_dream_succeeds_on_replay

from sage_gr00t.data.collect import run_expert_episode
from sage_gr00t.experts.scripted import ScriptedExpert
from sage_gr00t.learn.mimic import (
    PUSH,
    MimicConfig,
    MimicDreamGenerator,
    dataset_recordings,
    parse_recordings,
    push_turn,
    replay,
)
from sage_gr00t.modality import EGO_VIEW
from sage_gr00t.perceive.camera import CameraConfig, CameraObjectEstimator, capture_frame
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import get_task, make_env
from sage_gr00t_tasks.push_block import BLOCK_HALF, PushBlock

IMAGE = 32  # physics is what is tested; frames only have to exist
DEMOS = 3


def _heading(env) -> float:
    d = env.body_pos(env.task.pad)[:2] - env.body_pos(env.task.block)[:2]
    return math.atan2(d[1], d[0])


def test_layouts_need_pushes_in_every_direction() -> None:
    assert get_task("push_block") is PushBlock  # registered through the entry point
    env = make_env("push_block", image_height=IMAGE, image_width=IMAGE)
    try:
        quadrants = set()
        for seed in range(40):
            env.reset(seed=seed)
            assert not env.is_success(), f"seed {seed}: the block starts on the pad"
            gap = np.linalg.norm(env.body_pos(env.task.pad)[:2] - env.body_pos(env.task.block)[:2])
            assert gap >= 0.1
            # Away from the robot (+x), to its left, back towards it, to its right.
            quadrants.add(int(((_heading(env) + math.pi / 4) % (2 * math.pi)) // (math.pi / 2)))
        assert quadrants == {0, 1, 2, 3}
    finally:
        env.close()


@pytest.mark.parametrize("variant", ["train", "novel"])
def test_the_expert_pushes_the_block_onto_the_pad(variant: str) -> None:
    env = make_env("push_block", variant=variant, randomization=DomainRandomizationConfig.from_yaml(profile="train"),
                   image_height=IMAGE, image_width=IMAGE)
    expert = ScriptedExpert(env)
    try:
        for seed in range(3):
            heights: list[float] = []

            def track(_obs: dict, _action: dict, heights: list[float] = heights) -> None:
                heights.append(float(env.body_pos(env.task.block)[2] - env.table_height))

            outcome = run_expert_episode(env, expert, seed, track)
            assert outcome.success, f"{variant} seed {seed}: block at {env.body_pos(env.task.block)}, " \
                                    f"pad at {env.body_pos(env.task.pad)}"
            assert max(heights) < BLOCK_HALF + 0.01  # slid along the table, never lifted
    finally:
        env.close()


def test_camera_finds_the_block_and_the_pad() -> None:
    env = make_env("push_block", image_height=224, image_width=224)
    try:
        for seed in range(2):
            obs, _ = env.reset(seed=seed)
            cam = CameraObjectEstimator(env.task.signatures(),
                                        CameraConfig(height=224, width=224, table_height=env.table_height))
            est = cam.detect(capture_frame(env, cam.config, env.data.time, obs[EGO_VIEW]))
            for name in env.object_names():  # measured: 2-5 mm
                assert np.linalg.norm(est[name].position - env.body_pos(name)) < 0.015, f"seed {seed}: {name}"
    finally:
        env.close()


def test_push_turn_heads_at_the_new_goal() -> None:
    origin = np.zeros(3)
    assert push_turn(origin, np.array([1.0, 0, 0]), np.array([0.3, 0.1, 0]), np.array([0.3, 0.5, 0])) \
        == pytest.approx(math.pi / 2)
    assert push_turn(origin, np.array([0, 1.0, 0]), origin, np.array([0, -1.0, 0])) == pytest.approx(-math.pi)


def record_demos(root: Path, n: int) -> None:
    """The project's recorder with the scripted expert (the only place an expert appears)."""
    from sage_gr00t.data.collect import CollectionState, collect_episodes
    from sage_gr00t.data.lerobot_dataset import DatasetLayout, GrootDatasetWriter

    env = make_env("push_block", image_height=IMAGE, image_width=IMAGE)
    try:
        with GrootDatasetWriter(root, DatasetLayout.from_env(env), use_videos=False) as writer:
            collect_episodes(env, ScriptedExpert(env), writer, target_episodes=n, state=CollectionState(),
                             episode_extra={"task_name": "push_block", "embodiment": "sage_humanoid",
                                            "variant": "train", "randomization": "none"})
    finally:
        env.close()


def test_push_dreams_from_a_dataset_succeed_when_replayed(tmp_path: Path) -> None:
    root = tmp_path / "demos"
    record_demos(root, DEMOS)
    recordings = dataset_recordings(root)
    sources = parse_recordings(recordings, PushBlock)
    assert len(sources) == DEMOS
    replayer = make_env(PushBlock, image_height=16, image_width=16)
    try:
        for rec, source in zip(recordings, sources, strict=True):
            # One push of the block, aimed at the pad (no grasp, no release), spanning every frame it is touched.
            assert [(s.kind, s.reference, s.goal) for s in source.segments] == [(PUSH, "orange_block", "green_pad")]
            seg = source.segments[0]
            first, last = seg.frames
            assert np.linalg.norm(seg.goal_pos - seg.ref_pos) >= 0.1
            _, touching, success = replay(replayer, rec)
            contacts = np.flatnonzero(touching["orange_block"])
            assert success and len(contacts) and first < contacts[0] and contacts[-1] < last < source.length
    finally:
        replayer.close()

    config = MimicConfig(task="push_block", image_size=IMAGE, randomization="train", nearest_k=1)
    generator = MimicDreamGenerator(sources, config, task=PushBlock)
    try:
        attempts = generator.generate(wanted=3, max_attempts=6)
    finally:
        generator.close()
    kept = [a.dream for a in attempts if a.dream is not None]
    print(f"\npush dreams: kept {len(kept)} / attempted {len(attempts)}")
    assert kept, [a.provenance for a in attempts]
    # Pushes in new directions: a source's push turned (its task frame onto the new block -> pad) still lands.
    assert any(abs(d.provenance["segments"][0]["delta_yaw"]) > math.radians(30) for d in kept)

    fresh = make_env(PushBlock, randomization=DomainRandomizationConfig.from_yaml(profile="train"),
                     image_height=IMAGE, image_width=IMAGE)
    try:
        for dream in kept:
            (segment,) = dream.provenance["segments"]
            assert segment["kind"] == PUSH and segment["goal"] == "green_pad"
            assert segment["source"] in {s.id for s in sources}
            assert_dream_succeeds_on_replay(fresh, dream)
    finally:
        fresh.close()
