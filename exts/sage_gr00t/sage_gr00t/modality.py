"""GR00T's modality names, defined once: observation / action dict keys and the joint groups.

Upstream `Gr00tPolicy.get_action` takes `video.<camera>` uint8 (T, H, W, 3), `state.<group>` float32
(T, D) and `annotation.human.task_description` (str), and returns `action.<group>` chunks (H, D).
Every module of this project (simulators, policies, SAGE, datasets, panels) spells them through here.
"""

from __future__ import annotations

# The robot's joint groups, in the order flat vectors concatenate them.
ARM_GROUPS = ("left_arm", "right_arm")
HAND_GROUPS = ("left_hand", "right_hand")
JOINT_GROUPS = (*ARM_GROUPS, *HAND_GROUPS)

EGO_CAMERA = "ego_view"  # the head camera the policy sees

VIDEO_PREFIX = "video."
STATE_PREFIX = "state."
ACTION_PREFIX = "action."
ANNOTATION_PREFIX = "annotation."


def video_key(camera: str) -> str:
    return VIDEO_PREFIX + camera


def state_key(group: str) -> str:
    return STATE_PREFIX + group


def action_key(group: str) -> str:
    return ACTION_PREFIX + group


def group_of(key: str) -> str:
    """`state.left_arm` / `action.left_arm` / `video.ego_view` -> `left_arm` / `ego_view`."""
    return key.split(".", 1)[1]


EGO_VIEW = "video.ego_view"  # the one place this key is spelled
assert video_key(EGO_CAMERA) == EGO_VIEW
STATE_KEYS = tuple(state_key(g) for g in JOINT_GROUPS)
ACTION_KEYS = tuple(action_key(g) for g in JOINT_GROUPS)
# The episode's instruction (whole task); upstream's `annotation.human.task_description`.
LANGUAGE_KEY = ANNOTATION_PREFIX + "human.task_description"
# Per-frame subtask language in datasets (upstream's `annotation.human.action.task_description`).
SUBTASK_LANGUAGE_KEY = ANNOTATION_PREFIX + "human.action.task_description"


def state_of(obs: dict) -> dict:
    """The `state.*` entries of an observation dict."""
    return {k: v for k, v in obs.items() if k.startswith(STATE_PREFIX)}


def is_action_key(key: str) -> bool:
    return key.startswith(ACTION_PREFIX)
