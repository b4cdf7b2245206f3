"""A new task defined in this one module runs on both simulators without editing any registry.

`NudgeBlock` declares everything a task needs (objects, layout, language, success, expert plan) against
`SceneAccess`; `make_env(NudgeBlock, backend=...)` builds it on the embedded MuJoCo simulator and, where
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


class NudgeBlock(Task):
    name = "nudge_block"
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


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Isaac Lab 3.0 warns on every action write
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_declared_here_runs_on_both_backends(backend: str) -> None:
    env = make_env(NudgeBlock, backend=backend, image_height=64, image_width=64)
    try:
        obs, info = env.reset(seed=3)
        assert obs[EGO_VIEW].shape == (64, 64, 3)
        assert env.task_name == "nudge_block" and env.instruction in NudgeBlock().instructions()
        assert not info["success"] and not env.is_success()
        result = run_episode(env, ExpertPolicy(env), seed=3)
        assert result.success, f"expert push failed on {backend}: block at {env.body_pos('orange_block')}, " \
                               f"pad at {env.body_pos('pad')}"
        assert env.is_success()
        env.reset(seed=3)
        assert not env.is_success()
    finally:
        env.close()


PACKAGE_TASK = '''
"""A user's own task package: one task, found through the sage_gr00t.tasks entry point."""
import numpy as np
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import Geom, ObjectSpec, Task


class StackOnPad(Task):
    name = "stack_on_pad"
    example_command = "put the yellow block on the pad"

    def objects(self):
        return (
            ObjectSpec("yellow_block", (Geom("box", (0.022, 0.022, 0.022), (0.9, 0.85, 0.1, 1),
                                             friction=(1.2, 0.02, 0.002)),),
                       kind="block", role="pickable", color="yellow", mass=0.08, radius=0.022),
            ObjectSpec("pad", (Geom("box", (0.06, 0.06, 0.003), (0.2, 0.3, 0.8, 1), pos=(0, 0, 0.003)),),
                       kind="tray", role="receptacle", movable=False, radius=0.06),
        )

    def place(self, scene, rng, pose_scale=1.0):
        z = scene.table_height
        scene.set_pose("yellow_block", np.array([0.38 + 0.03 * rng.random(), 0.05, z + 0.023]))
        scene.set_pose("pad", np.array([0.40, 0.22, z]))

    def is_success(self, scene):
        block, pad = scene.body_pos("yellow_block"), scene.body_pos("pad")
        return bool(np.all(np.abs(block[:2] - pad[:2]) < 0.06) and not scene.touching_robot("yellow_block"))

    def instructions(self):
        return ["put the yellow block on the pad"]

    def expert_plan(self):
        return [Subtask("pick_place", "yellow_block", "pad", "put the yellow block on the pad")]

    def place_height(self, object_name, target_name):
        return 0.05
'''

PACKAGE_PYPROJECT = '''
[build-system]
requires = ["setuptools>=71"]
build-backend = "setuptools.build_meta"

[project]
name = "throwaway-sage-tasks"
version = "0.0.1"

[project.entry-points."sage_gr00t.tasks"]
stack_on_pad = "throwaway_sage_tasks.stack:StackOnPad"

[tool.setuptools]
packages = ["throwaway_sage_tasks"]
'''


def test_a_task_package_with_its_own_entry_point_plugs_in(tmp_path) -> None:
    """pip-install a throwaway task package into a folder, then evaluate its task by name with sage-eval."""
    import json
    import os
    import subprocess
    import sys

    source = tmp_path / "src"
    (source / "throwaway_sage_tasks").mkdir(parents=True)
    (source / "throwaway_sage_tasks" / "__init__.py").write_text("")
    (source / "throwaway_sage_tasks" / "stack.py").write_text(PACKAGE_TASK)
    (source / "pyproject.toml").write_text(PACKAGE_PYPROJECT)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-c", "from sage_gr00t.tasks import task_names; print(task_names())"],
                            env=env, check=True, capture_output=True, text=True).stdout
    assert "stack_on_pad" in listed and "pick_apple" in listed
    out = tmp_path / "eval"
    subprocess.run([sys.executable, "-m", "sage_gr00t.cli.eval", "--policy", "expert", "--task", "stack_on_pad",
                    "--episodes", "2", "--out", str(out), "--task-option", "image_height=48", "image_width=48"],
                   env=env, check=True, capture_output=True, text=True)
    episodes = json.loads((out / "results.json").read_text())
    assert [e["task"] for e in episodes] == ["stack_on_pad", "stack_on_pad"]
    assert all(e["success"] for e in episodes)
