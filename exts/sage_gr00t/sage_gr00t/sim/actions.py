"""Action dicts every simulator backend accepts: the neutral command and the checks run before physics."""

from __future__ import annotations

import numpy as np

from sage_gr00t.modality import ACTION_KEYS, action_key, group_of
from sage_gr00t.sim.embodiment import EmbodimentSpec


class InvalidActionError(ValueError):
    """An action dict that must not reach the simulator."""


def home_action(embodiment: EmbodimentSpec) -> dict[str, np.ndarray]:
    """Arms at their home pose, hands open: every backend's neutral command."""
    return {
        action_key("left_arm"): np.array(embodiment.left.arm_home, np.float32),
        action_key("right_arm"): np.array(embodiment.right.arm_home, np.float32),
        action_key("left_hand"): np.array(embodiment.left.hand_open, np.float32),
        action_key("right_hand"): np.array(embodiment.right.hand_open, np.float32),
    }


def check_action(action: dict, ctrl_range: dict[str, np.ndarray], embodiment: str) -> dict[str, np.ndarray]:
    """Keys, shapes, finiteness and joint ranges of an action dict -> {action key: float64 values}.

    Every backend runs this before touching its simulator; `ctrl_range` is (d, 2) bounds per group.
    """
    if not isinstance(action, dict):
        raise InvalidActionError(f"Action must be a dict with keys {ACTION_KEYS}, got {type(action).__name__}.")
    missing = [k for k in ACTION_KEYS if k not in action]
    if missing:
        raise InvalidActionError(f"Action is missing keys {missing}; expected {ACTION_KEYS}.")
    out = {}
    for key in ACTION_KEYS:
        group = group_of(key)
        raw = np.asarray(action[key])
        # Only real numbers: strings, booleans, complex values and objects are refused, not converted.
        if raw.dtype.kind not in "iuf":
            raise InvalidActionError(f"{key} must hold real numbers (float or int), got dtype {raw.dtype} "
                                     f"({action[key]!r:.60}). The robot holds its pose.")
        value = raw.astype(np.float64)
        expected = (len(ctrl_range[group]),)
        if value.shape != expected:
            raise InvalidActionError(
                f"{key} has shape {value.shape}, expected {expected} for embodiment "
                f"{embodiment} (one control step; execute action chunks step by step)."
            )
        if not np.all(np.isfinite(value)):
            raise InvalidActionError(f"{key} contains NaN or inf: {value}. The robot holds its pose.")
        lo, hi = ctrl_range[group].T
        bad = (value < lo - 1e-6) | (value > hi + 1e-6)
        if np.any(bad):
            idx = np.flatnonzero(bad)
            raise InvalidActionError(
                f"{key} out of joint range at indices {idx.tolist()}: values {value[idx].round(4).tolist()}, "
                f"limits {ctrl_range[group][idx].round(4).tolist()}. Clip with a safety filter first."
            )
        out[key] = value
    return out
