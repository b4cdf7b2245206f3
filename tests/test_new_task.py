"""A new task defined in this one module runs on both simulators without editing any registry.

`PushBlock` declares everything a task needs (objects, layout, language, success, expert plan) against
`SceneAccess`; `make_env(PushBlock, backend=...)` builds it on the embedded MuJoCo simulator and, where
Isaac Lab 3.0 is installed, as a kit-less Newton Isaac Lab task (objects spawned from the declared primitives).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sage_gr00t.evaluation import run_episode
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.modality import EGO_VIEW
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import Geom, GraspSpec, ObjectSpec, SceneAccess, Task, make_env, sample_positions

HALF = 0.025
PAD_RADIUS = 0.05


class PushBlock(Task):
    name = "push_block"
    example_command = "push the block onto the pad"

    def objects(self) -> tuple[ObjectSpec, ...]:
        return (
            ObjectSpec("orange_block", (Geom("box", (HALF, HALF, HALF), (0.95, 0.5, 0.1, 1),
                                             friction=(0.6, 0.01, 0.001)),),
                       kind="block", role="pickable", color="orange", mass=0.1, radius=HALF),
            # A flat target pad (a setting): 2 mm thick, so a pushed block slides over its edge.
            ObjectSpec("pad", (Geom("cylinder", (PAD_RADIUS, 0.001), (0.2, 0.8, 0.3, 1), pos=(0, 0, 0.001)),),
                       kind="pad", role="fixture", movable=False, radius=PAD_RADIUS),
        )

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        side = 1.0 if rng.random() < 0.5 else -1.0
        block, pad = sample_positions(rng, [((0.34, 0.38), (0.08, 0.12)), ((0.34, 0.38), (0.20, 0.24))],
                                      min_distance=0.09, scale=pose_scale)
        z = scene.table_height
        scene.set_pose("orange_block", np.array([block[0], side * block[1], z + HALF + 0.001]))
        scene.set_pose("pad", np.array([pad[0], side * pad[1], z]))

    def is_success(self, scene: SceneAccess) -> bool:
        block, pad = scene.body_pos("orange_block"), scene.body_pos("pad")
        on_pad = np.linalg.norm(block[:2] - pad[:2]) < PAD_RADIUS
        return bool(on_pad and block[2] < scene.table_height + 0.05 and not scene.touching_robot("orange_block"))

    def instructions(self) -> list[str]:
        return ["push the orange block onto the green pad", "slide the block onto the pad"]

    def expert_plan(self) -> list[Subtask]:
        return [Subtask("push", "orange_block", "pad", "push the orange block onto the green pad")]

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        return GraspSpec(height=0.0)


BACKENDS = ["mujoco", pytest.param("isaaclab", marks=pytest.mark.skipif(
    importlib.util.find_spec("isaaclab") is None, reason="isaaclab not installed (pip install -e '.[isaaclab]')"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_declared_here_runs_on_both_backends(backend: str) -> None:
    env = make_env(PushBlock, backend=backend, image_height=64, image_width=64)
    try:
        obs, info = env.reset(seed=3)
        assert obs[EGO_VIEW].shape == (64, 64, 3)
        assert env.task_name == "push_block" and env.instruction in PushBlock().instructions()
        assert not info["success"] and not env.is_success()
        result = run_episode(env, ExpertPolicy(env), seed=3)
        assert result.success, f"expert push failed on {backend}: block at {env.body_pos('orange_block')}, " \
                               f"pad at {env.body_pos('pad')}"
        assert env.is_success()
        env.reset(seed=3)
        assert not env.is_success()
    finally:
        env.close()
