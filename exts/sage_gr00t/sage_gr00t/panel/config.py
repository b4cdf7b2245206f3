"""The SAGE panel's settings (`PanelConfig`), the values its controls accept, and asset path resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sage_gr00t.learn.planner_sleep import PlannerSleepConfig
from sage_gr00t.memory.metabolic import MetabolicConfig
from sage_gr00t.session import SessionConfig

SPEED_RANGE = (10.0, 100.0)  # percent; the safety filter's speed scale is percent / 100
STATUSES = ("idle", "planning", "running", "stopped", "estop", "refused", "done", "failed", "succeeded")


@dataclass
class PanelConfig:
    task: str = "pick_apple"  # an installed task (sage_gr00t.tasks.task_names())
    policy: str = "assets/policies/gr00t_compact"  # expert | a checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    planner: str = "assets/planner"  # H-module planner checkpoint
    seed: int = 1000  # the first scene's layout seed (Reset draws the next)
    embodiment: str = "sage_humanoid"  # sage_humanoid or unitree_g1 (needs a local MuJoCo Menagerie)
    variant: str = "train"  # train, or novel (unseen object shapes and colours)
    device: str = "cpu"  # torch device of the policy and planner
    language_mode: str = "subtask"  # what the policy reads: each subtask (SAGE) or the whole command
    control_hz: float = 20.0
    stop_on_success: bool = True  # hold the robot once the task's success predicate holds (as eval does)
    speed_percent: float = 100.0
    history_len: int = 400  # trust samples kept for the plots
    log_len: int = 30
    max_dreams: int = 6  # sleep cycles kept for the gallery
    thumbnails_per_dream: int = 4  # salient-memory thumbnails per cycle (besides the dreamt episodes')
    dream_episodes: int = 1  # expert episodes dreamt per sleep cycle (0: replay only, no dreamer)
    dream_image_size: int = 128
    sleep_training_steps: int = 20  # consolidation updates per cycle for a learned policy (0: none)
    learn_planner: bool = True  # sleep also teaches the planner the commands successful episodes confirmed
    thumbnail_size: int = 64
    front_view_every: int = 0  # render the front view every N ticks (0: never; the ego camera is always there)
    front_view_size: tuple[int, int] = (240, 320)  # (height, width)
    max_command_chars: int = 300
    metabolic: MetabolicConfig = field(default_factory=MetabolicConfig)
    task_options: dict[str, Any] = field(default_factory=dict)  # TaskConfig overrides

    def __post_init__(self) -> None:
        lo, hi = SPEED_RANGE
        if not lo <= float(self.speed_percent) <= hi:
            raise ValueError(f"speed_percent must be in [{lo:g}, {hi:g}], got {self.speed_percent}.")
        if self.control_hz <= 0 or self.history_len < 2 or self.thumbnail_size < 8:
            raise ValueError("control_hz must be > 0, history_len >= 2 and thumbnail_size >= 8.")

    def session_config(self) -> SessionConfig:
        """The panel's controller session: always SAGE around the policy (the panel takes commands)."""
        return SessionConfig(
            task=self.task, embodiment=self.embodiment, variant=self.variant, task_options=dict(self.task_options),
            policy=self.policy, device=self.device, controller="sage", planner=self.planner,
            language_mode=self.language_mode, dream_episodes=self.dream_episodes,
            dream_image_size=self.dream_image_size, thumbnail_size=self.thumbnail_size,
            sleep_training_steps=self.sleep_training_steps, metabolic=self.metabolic,
            planner_sleep=PlannerSleepConfig() if self.learn_planner else None)
