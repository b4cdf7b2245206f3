"""Dreams made from recorded experience, in the way of MimicGen / Isaac Lab Mimic -- no scripted expert.

Input: recorded episodes (a LeRobot dataset written by the project's recorder, or successful episodes of the
experience store) -- joint-target actions per frame, the episode's seed and, where recorded, per-frame subtask
language. Nothing of the task's expert (plan, grasp or pour specs) is read; only the task's declaration
(objects, `place`, `is_success`, instructions) and the arm IK (`experts/ik.py`).

1. Parse (`parse_episode`): the recorded actions are replayed open loop in a private simulator reset with the
   episode's seed, which gives every object's pose at every frame (and checks the replay reproduces the
   recording: same start poses where recorded, success at the end). End-effector poses are forward kinematics
   of the commanded arm joints. The episode splits into subtask windows (the annotation's segments, else the
   whole episode); each window's active arm (the one that moved) splits at its hand's close / open events into
   object-centric segments: `grasp` (reference: the object the fingers touch when they close) and `release`
   (reference: the object nearest the held one when the hand opens, or at the window's end when it never
   opens, e.g. a pour). A segment's object-centric part is the contiguous run of frames around its event
   where the hand stays within `skill_margin` of how close it came to the reference; the rest is transit.
   A push has no grasp: the hand closes on nothing (or never closes) and then touches an object. Its
   `push` segment is that object's first to last contact, extended by the same `skill_margin` rule (the
   distance to where the object is at each frame: it moves); its goal is the object it ends nearest (a pad).
2. Generate (`MimicDreamGenerator`): reset a private domain-randomized simulator with a fresh seed, so the
   task's own `place` samples new object poses; follow a source episode's sequence of segments, each taken
   from the source whose reference object lay nearest to where it is now (MimicGen's nearest-neighbour
   selection; a release comes from the same episode as its grasp when it can); transform each segment by the
   reference object's pose change (a yaw reduced by the object's declared rotational symmetry: a sphere has
   none to undo, a cube repeats every 90 degrees); stitch with interpolated transit motion (up, across, down:
   never dragging a held object through a bin wall); execute with IK; keep the dream only if the task's
   `is_success` accepts it. A push depends on two objects (where it starts, where it must go), so as in
   MimicGen its source is the one whose goal lay nearest relative to the object (and the object nearest
   where it is now), and it is transformed in a task frame: origin at the object, x axis from the object to
   its goal -- the new push heads at the new goal, whichever way that is from the object.
3. Augment the kept dream cheaply: image colour jitter, state noise, an instruction paraphrase drawn from the
   task's own instructions. Each dream carries provenance (source episodes, transforms, randomization seed,
   success, a thumbnail); `stats` counts kept / attempted per task.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from sage_gr00t.experts.ik import ArmIK, quat_mul, yaw_quat
from sage_gr00t.learn.dreams import Dream, _thumbnail
from sage_gr00t.modality import EGO_VIEW, STATE_PREFIX, action_key, state_key
from sage_gr00t.policy.gr00t.grounding import named_positions, names_one_goal
from sage_gr00t.tasks.protocols import TaskEnv
from sage_gr00t.tasks.spec import Geom, ObjectSpec, Task, yaw_of

logger = logging.getLogger(__name__)

SIDES = ("left", "right")
GRASP, RELEASE, PUSH = "grasp", "release", "push"
POSE_CHECK_TOLERANCE = 1e-3  # m: a replay whose start poses differ more does not reproduce the recording


@dataclass
class MimicConfig:
    task: str = "pick_apple"
    embodiment: str = "sage_humanoid"
    variant: str = "train"
    randomization: str = "train"  # profile of config/domain_randomization.yaml for the dream simulator
    image_size: int = 128
    episodes_per_cycle: int = 2  # dreams wanted per `dream()` call (the bridge's sleep cycle)
    max_attempts_factor: int = 3  # attempts per wanted dream before giving up
    seed_start: int = 20_000_000  # dream seeds: apart from training (0..), evaluation (1000..) and expert dreams
    skill_margin: float = 0.11  # m beyond the closest approach that still counts as object-centric motion
    transit_speed: float = 0.4  # m/s of interpolated transit motion
    min_transit_steps: int = 6
    tail_steps: int = 8  # steps holding the last action before success is checked
    nearest_k: int = 3  # a segment comes from one of the k sources whose reference lay nearest
    color_jitter: float = 0.08  # +- relative gain per RGB channel of a dream's frames
    state_noise_std: float = 0.002  # rad added to a dream's recorded joint states
    paraphrase: bool = True  # the dream's instruction: a phrasing of the task's own instructions
    task_paraphrases: int = 0  # other words for it stored with the dream (plan/commands.py's training templates)
    thumbnail_size: int = 64

    def __post_init__(self) -> None:
        if self.episodes_per_cycle < 0 or self.max_attempts_factor < 1 or self.nearest_k < 1:
            raise ValueError("episodes_per_cycle must be >= 0, max_attempts_factor and nearest_k >= 1.")
        if self.skill_margin <= 0 or self.transit_speed <= 0:
            raise ValueError("skill_margin and transit_speed must be > 0.")


def _object_target_pairs(segments: Sequence[Any]) -> list[tuple[str, str | None]]:
    """(object, target) each slot's motion serves: a grasp's object and the release after it, a release's held
    object and its reference, a push's object and its goal."""
    pairs: list[tuple[str, str | None]] = []
    held: str | None = None
    for i, slot in enumerate(segments):
        following = segments[i + 1] if i + 1 < len(segments) else None
        if slot.kind == GRASP:
            held = slot.reference
            pairs.append((slot.reference, following.reference if following is not None and following.kind == RELEASE
                          else None))
        elif slot.kind == RELEASE:
            pairs.append((held or slot.reference, slot.reference))
            held = None
        else:
            pairs.append((slot.reference, slot.goal))
    return pairs


# ---------------------------------------------------------------------------------------- sources
@dataclass
class SourceSegment:
    """One object-centric piece of a recorded episode, in world coordinates of its source scene."""

    episode: str  # source episode id ("<dataset>#<index>" or "store:<id>")
    kind: str  # GRASP, RELEASE or PUSH
    side: str
    reference: str  # the object the motion is relative to
    language: str  # the subtask's language (the episode's instruction when unannotated)
    ref_pos: np.ndarray  # (3,) the reference's position when the segment starts
    ref_yaw: float
    ee_pos: np.ndarray  # (n, 3) commanded end-effector positions
    ee_quat: np.ndarray  # (n, 4) (w, x, y, z)
    hand: np.ndarray  # (n, d) the side's hand joint targets
    frames: tuple[int, int]  # [first, last] frame in the source episode
    # A grasp's goal: where the reference of the release that follows it lay (None: no release follows).
    # Sources are chosen by object AND goal: an arm that grasped for a goal on its side cannot reach across.
    # A push's goal: where the object it ends nearest lay when the push started.
    goal_pos: np.ndarray | None = None
    goal: str | None = None  # a push's goal object (its pose in a new scene sets the push's task frame)


@dataclass
class SourceEpisode:
    id: str
    seed: int | None
    instruction: str
    length: int
    segments: list[SourceSegment]
    origin: dict[str, Any] = field(default_factory=dict)  # dataset path / store id, variant, randomization


@dataclass
class Recording:
    """What parsing needs of one recorded episode (from a dataset or the store)."""

    id: str
    seed: int
    actions: dict[str, np.ndarray]  # action.<group> -> (T, d) joint targets
    instruction: str
    subtasks: list[tuple[int, str]] | None = None  # [(first frame, language)] segments
    object_poses: dict[str, list[float]] | None = None  # recorded start poses, checked against the replay
    variant: str = "train"
    randomization: str = "none"
    embodiment: str = "sage_humanoid"
    origin: dict[str, Any] = field(default_factory=dict)


def closure(hand: np.ndarray, open_: Sequence[float], closed: Sequence[float]) -> np.ndarray:
    """(T,) hand closure in [0, 1]-ish: the hand's targets projected on the open -> closed line."""
    o, c = np.asarray(open_, float), np.asarray(closed, float)
    span = c - o
    return (np.asarray(hand, float) - o) @ span / max(float(span @ span), 1e-12)


def yaw_period(spec: ObjectSpec) -> float | None:
    """Smallest yaw rotation that maps the object's collision geometry onto itself: None when any yaw does
    (a sphere, an upright cylinder), pi/2 for a cube, pi for a brick, 2 pi otherwise."""
    geoms = [g for g in spec.geoms if not g.visual_only] or list(spec.geoms)
    if any(g.quat is not None for g in geoms):
        return 2 * math.pi

    def axisymmetric(g: Geom) -> bool:
        round_xy = g.shape in ("sphere", "cylinder", "capsule") or (g.shape == "ellipsoid" and g.size[0] == g.size[1])
        return round_xy and abs(g.pos[0]) < 1e-9 and abs(g.pos[1]) < 1e-9

    if all(axisymmetric(g) for g in geoms):
        return None

    def rotated(g: Geom, quarter_turns: int) -> tuple:
        x, y, z = g.pos
        size = tuple(g.size)
        for _ in range(quarter_turns):
            x, y = -y, x
            if g.shape in ("box", "ellipsoid"):
                size = (size[1], size[0], *size[2:])
        return (g.shape, tuple(round(s, 6) for s in size), round(x, 6) + 0.0, round(y, 6) + 0.0, round(z, 6))

    base = sorted(rotated(g, 0) for g in geoms)
    for turns, period in ((1, math.pi / 2), (2, math.pi)):
        if sorted(rotated(g, turns) for g in geoms) == base:
            return period
    return 2 * math.pi


def reduce_yaw(delta: float, period: float | None) -> float:
    """The yaw change to apply, reduced by the object's symmetry to the smallest equivalent turn."""
    if period is None:
        return 0.0
    return float((delta + period / 2) % period - period / 2)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.arccos(min(1.0, abs(float(np.dot(a, b))))))


def least_turn(delta: float, period: float | None, hand_now: np.ndarray, segment_start: np.ndarray) -> float:
    """Of the yaw changes the object's symmetry makes equivalent, the one that turns the hand least from where
    it is now to the segment's first orientation (a cube grasped 40 degrees off needs no 130 degree wrist turn)."""
    if period is None:
        return 0.0
    if period >= 2 * math.pi - 1e-9:
        return float((delta + math.pi) % (2 * math.pi) - math.pi)
    base = reduce_yaw(delta, period)
    options = [base + k * period for k in range(-2, 3) if abs(base + k * period) <= math.pi + 1e-9]
    return min(options, key=lambda d: _angle(hand_now, quat_mul(yaw_quat(d), segment_start)))


def push_turn(src_obj: np.ndarray, src_goal: np.ndarray, obj: np.ndarray, goal: np.ndarray) -> float:
    """The yaw in [-pi, pi) that turns a push's source task frame (x axis: object -> goal) onto the new one."""
    def heading(a: np.ndarray, b: np.ndarray) -> float:
        return math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))

    return float((heading(obj, goal) - heading(src_obj, src_goal) + math.pi) % (2 * math.pi) - math.pi)


def _skill_run(dist: np.ndarray, key: int, lo: int, hi: int, margin: float) -> tuple[int, int]:
    """[first, last] frames around `key` (within [lo, hi)) where `dist` stays within its value at `key` + margin."""
    limit = dist[key] + margin
    first = last = key
    while first - 1 >= lo and dist[first - 1] <= limit:
        first -= 1
    while last + 1 < hi and dist[last + 1] <= limit:
        last += 1
    return first, last


def _push_run(touching: dict[str, np.ndarray], poses: dict[str, np.ndarray], pos: np.ndarray,
              movable: Sequence[str], contact: tuple[int, int], bounds: tuple[int, int],
              margin: float) -> tuple[str, int, int] | None:
    """(pushed object, first, last frame) of a push: the movable object the robot touches most within
    `contact`, from its first to its last contact there, extended within `bounds` while the hand stays within
    `margin` of how close it was at those contacts (to the object where it is at each frame: it moves)."""
    lo, hi = contact
    counts = {n: int(touching[n][lo:hi].sum()) for n in movable}
    if not counts or max(counts.values()) == 0:
        return None
    ref = max(counts, key=counts.get)
    hits = np.flatnonzero(touching[ref][lo:hi]) + lo
    dist = np.linalg.norm(pos - poses[ref][:, :3], axis=1)
    first, _ = _skill_run(dist, int(hits[0]), bounds[0], bounds[1], margin)
    _, last = _skill_run(dist, int(hits[-1]), bounds[0], bounds[1], margin)
    return ref, first, last


def parse_episode(rec: Recording, task: Task, ik: ArmIK, poses: dict[str, np.ndarray],
                  touching: dict[str, np.ndarray], margin: float) -> list[SourceSegment]:
    """Object-centric segments of one replayed recording; `poses[name]`: (T, 7) pos + quat at each frame,
    `touching[name]`: (T,) whether the robot touches it."""
    emb = ik.emb
    length = len(next(iter(rec.actions.values())))
    ee = {s: (np.zeros((length, 3)), np.zeros((length, 4))) for s in SIDES}
    for t in range(length):  # forward kinematics of the commanded joints: the poses IK aimed at
        ik.reset({s: rec.actions[action_key(f"{s}_arm")][t] for s in SIDES})
        for s in SIDES:
            ee[s][0][t], ee[s][1][t] = ik.site_pose(s)
    windows = []
    marks = rec.subtasks or [(0, rec.instruction)]
    for i, (start, text) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else length
        if end > start:
            windows.append((start, end, text))
    movable = [o.name for o in task.objects() if o.movable]
    names = list(poses)
    segments: list[SourceSegment] = []
    for start, end, text in windows:
        motion = {s: float(np.abs(np.diff(rec.actions[action_key(f"{s}_arm")][start:end], axis=0)).sum())
                  for s in SIDES}
        side = max(motion, key=motion.get)
        arm = emb.arm(side)
        c = closure(rec.actions[action_key(f"{side}_hand")], arm.hand_open, arm.hand_closed)
        closes = [t for t in range(start + 1, end) if c[t] >= 0.5 > c[t - 1]]
        opens = [t for t in range(start + 1, end) if c[t] < 0.5 <= c[t - 1]]
        pos, quat = ee[side]
        hand = rec.actions[action_key(f"{side}_hand")]
        cursor = start

        def segment(kind: str, ref: str, first: int, last: int, side: str = side, text: str = text,
                    pos: np.ndarray = pos, quat: np.ndarray = quat, hand: np.ndarray = hand) -> SourceSegment:
            p = poses[ref][first]
            return SourceSegment(rec.id, kind, side, ref, text, p[:3].copy(), yaw_of(p[3:7]),
                                 pos[first:last + 1].copy(), quat[first:last + 1].copy(),
                                 hand[first:last + 1].copy(), (first, last))

        def push(contact: tuple[int, int], bounds: tuple[int, int], pos: np.ndarray = pos) -> SourceSegment | None:
            run = _push_run(touching, poses, pos, movable, contact, bounds, margin)
            if run is None:
                return None
            ref, first, last = run
            seg = segment(PUSH, ref, first, last)
            # The push's goal: what the object ends nearest (a pad, a target area).
            others = [n for n in names if n != ref]
            if others:
                seg.goal = min(others, key=lambda n: float(np.linalg.norm(poses[n][last, :2] - poses[ref][last, :2])))
                seg.goal_pos = poses[seg.goal][first, :3].copy()
            return seg

        # A hand that never closes here grasps nothing: it may still push -- unless it starts on an object (it
        # holds what an earlier window grasped).
        if not closes and not any(touching[n][start] for n in movable):
            pushed = push((start, end), (start, end))
            if pushed is not None:
                segments.append(pushed)
        for k, tc in enumerate(closes):
            if tc < cursor:
                continue
            # The grasped object: the movable one the robot touches as the fingers close, else the nearest.
            after = slice(tc, min(tc + 12, length))
            touched = [n for n in movable if touching[n][after].any()]
            if not touched:
                # Closed on nothing, then touching an object before closing again: the closed fingers push it.
                nxt = closes[k + 1] if k + 1 < len(closes) else end
                pushed = push((tc, nxt), (cursor, nxt))
                if pushed is not None:
                    segments.append(pushed)
                    cursor = pushed.frames[1] + 1
                    continue
            held = min(touched or movable, key=lambda n: float(np.linalg.norm(poses[n][tc, :3] - pos[tc])))
            to = next((t for t in opens if t > tc), None)
            grasp_hi = to if to is not None else end
            dist = np.linalg.norm(pos - poses[held][tc, :3], axis=1)
            first, last = _skill_run(dist, tc, cursor, grasp_hi, margin)
            segments.append(segment(GRASP, held, first, last))
            cursor = last + 1
            key = to if to is not None else end - 1
            if key < cursor:
                continue
            # The reference of the release: what the held object is nearest to (a bin, a plate, a cup).
            others = [n for n in names if n != held]
            ref = min(others, key=lambda n: float(np.linalg.norm(poses[n][key, :2] - poses[held][key, :2])))
            next_close = closes[k + 1] if k + 1 < len(closes) else end
            dist = np.linalg.norm(pos - poses[ref][key, :3], axis=1)
            first, last = _skill_run(dist, key, cursor, max(next_close, key + 1), margin)
            segments.append(segment(RELEASE, ref, first, last))
            segments[-2].goal_pos = segments[-1].ref_pos.copy()
            cursor = last + 1
    return segments


def _make_env(task: str | Task | type[Task], embodiment: str, variant: str, randomization: str,
              image_size: int) -> TaskEnv:
    from sage_gr00t.sim.randomization import DomainRandomizationConfig
    from sage_gr00t.tasks import make_env

    if isinstance(task, Task):  # a fresh instance per env: tasks hold per-episode state (a language goal)
        task = type(task)
    return make_env(task, embodiment=embodiment, variant=variant,
                    randomization=DomainRandomizationConfig.from_yaml(profile=randomization),
                    image_height=image_size, image_width=image_size)


def replay(env: TaskEnv, rec: Recording) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
    """Reset with the recording's seed and step its actions open loop: per-frame object poses (T, 7), robot
    contact (T,) and whether the task succeeded at the end."""
    env.reset(seed=rec.seed)
    names = env.object_names()
    length = len(next(iter(rec.actions.values())))
    poses = {n: np.zeros((length, 7)) for n in names}
    touching = {n: np.zeros(length, bool) for n in names}
    for t in range(length):
        for n in names:
            poses[n][t, :3], poses[n][t, 3:] = env.scene.body_pos(n), env.scene.body_quat(n)
            touching[n][t] = env.scene.touching_robot(n)
        env.step({k: v[t] for k, v in rec.actions.items()})
    return poses, touching, env.is_success()


def parse_recordings(recordings: Sequence[Recording], task: str | Task | type[Task],
                     margin: float = MimicConfig.skill_margin) -> list[SourceEpisode]:
    """Replay and segment recordings; one that does not reproduce (start poses or final success differ) is
    left out with a warning, never dreamt from."""
    envs: dict[tuple[str, str, str], TaskEnv] = {}
    iks: dict[str, ArmIK] = {}
    sources = []
    try:
        for rec in recordings:
            key = (rec.embodiment, rec.variant, rec.randomization)
            if key not in envs:  # 16 px: the replay only needs physics, frames are never used
                envs[key] = _make_env(task, rec.embodiment, rec.variant, rec.randomization, 16)
            env = envs[key]
            if rec.embodiment not in iks:
                iks[rec.embodiment] = ArmIK(env.embodiment)
            poses, touching, success = replay(env, rec)
            if rec.object_poses:
                drift = max(float(np.linalg.norm(np.asarray(p[:3]) - poses[n][0, :3]))
                            for n, p in rec.object_poses.items() if n in poses)
                if drift > POSE_CHECK_TOLERANCE:
                    logger.warning("%s: the replay starts %.3f m from the recorded poses; not used.", rec.id, drift)
                    continue
            if not success:
                logger.warning("%s: the open-loop replay does not succeed; not used.", rec.id)
                continue
            segments = parse_episode(rec, env.task, iks[rec.embodiment], poses, touching, margin)
            if segments:
                sources.append(SourceEpisode(rec.id, rec.seed, rec.instruction, len(poses[env.object_names()[0]]),
                                             segments, {**rec.origin, "variant": rec.variant,
                                                        "randomization": rec.randomization}))
    finally:
        for env in envs.values():
            env.close()
    return sources


def dataset_recordings(root: str | Path, episodes: Sequence[int] | None = None) -> list[Recording]:
    """Recordings of a LeRobot dataset written by the project's recorder (needs each episode's seed). Only the
    actions and the recorder's episode records are read (pyarrow, no frames decoded, no LeRobot needed)."""
    from sage_gr00t.data.lerobot_dataset import read_episode_actions, read_episode_records, read_modality

    root = Path(root)
    actions = read_episode_actions(root)
    groups = read_modality(root)["action"]
    records = {int(r["episode_index"]): r for r in read_episode_records(root)}
    indices = list(episodes) if episodes is not None else sorted(actions)
    out = []
    for i in indices:
        record = records.get(i, {})
        if i not in actions:
            raise IndexError(f"{root} has no episode {i}; it holds {len(actions)}.")
        if record.get("seed") is None:
            logger.warning("%s episode %d has no seed: its scene cannot be rebuilt; not used.", root, i)
            continue
        extra = record.get("extra", {})
        subtasks = [(int(s), str(t)) for s, t in extra.get("subtasks", [])] or None
        out.append(Recording(
            id=f"{root.name}#{i}", seed=int(record["seed"]),
            actions={f"action.{g}": actions[i][:, r["start"]:r["end"]] for g, r in groups.items()},
            instruction=str(record.get("task", "")), subtasks=subtasks, object_poses=extra.get("object_poses"),
            variant=extra.get("variant", "train"), randomization=extra.get("randomization", "none"),
            embodiment=extra.get("embodiment", "sage_humanoid"), origin={"dataset": str(root), "episode_index": i}))
    return out


def store_recordings(store: Any, task: str, limit: int | None = None) -> list[Recording]:
    """Successful episodes of the experience store that kept their actions and seed (`record_episode` in
    learn/sleep.py stores them so): the robot's own experience as dream sources."""
    out = []
    for record in reversed(store.episodes(task=task, success=True)):  # newest first
        meta = record.meta
        if not record.has_trajectory or meta.get("seed") is None:
            continue
        traj = store.load_trajectory(record.id)
        actions = {k: v for k, v in traj.items() if k.startswith("action.")}
        if not actions:
            continue
        subtasks = [(int(s), str(t)) for s, t in meta.get("subtasks", [])] or None
        out.append(Recording(
            id=f"store:{record.id}", seed=int(meta["seed"]), actions=actions,
            instruction=str(meta.get("instruction", "")), subtasks=subtasks, object_poses=meta.get("object_poses"),
            variant=meta.get("variant", "train"), randomization=meta.get("randomization", "none"),
            embodiment=meta.get("embodiment", "sage_humanoid"), origin={"store_episode": record.id}))
        if limit is not None and len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------------------------------- generation
def _smoothstep(s: float) -> float:
    return s * s * (3 - 2 * s)


def _slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    out = np.zeros(4)
    dq = np.zeros(4)
    neg = np.zeros(4)
    mujoco.mju_negQuat(neg, q0)
    mujoco.mju_mulQuat(dq, neg, q1)  # q1 = q0 * dq
    if dq[0] < 0:
        dq = -dq
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, dq, 1.0)
    step = np.zeros(4)
    mujoco.mju_axisAngle2Quat(step, vel / max(np.linalg.norm(vel), 1e-12), float(np.linalg.norm(vel)) * s)
    mujoco.mju_mulQuat(out, q0, step)
    return out / np.linalg.norm(out)


def transit(p0: np.ndarray, q0: np.ndarray, p1: np.ndarray, q1: np.ndarray, speed: float, dt: float,
            min_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """End-effector poses from (p0, q0) to (p1, q1): up to the higher of the two heights, across, down
    (a held object never sweeps low through a wall), smoothstepped along the path's length."""
    top = max(p0[2], p1[2])
    points = [p0, np.array([p0[0], p0[1], top]), np.array([p1[0], p1[1], top]), p1]
    lengths = np.array([np.linalg.norm(b - a) for a, b in itertools.pairwise(points)])
    total = float(lengths.sum())
    n = max(min_steps, math.ceil(total / (speed * dt)))
    bounds = np.concatenate([[0.0], np.cumsum(lengths)])
    pos, quat = np.zeros((n, 3)), np.zeros((n, 4))
    for i in range(n):
        s = _smoothstep((i + 1) / n)
        d = s * total
        j = min(int(np.searchsorted(bounds, d, side="right")) - 1, len(lengths) - 1)
        f = 0.0 if lengths[j] < 1e-12 else (d - bounds[j]) / lengths[j]
        pos[i] = points[j] + min(max(f, 0.0), 1.0) * (points[j + 1] - points[j])
        quat[i] = _slerp(q0, q1, s)
    return pos, quat


@dataclass
class Attempt:
    """One generation attempt: what provenance the store keeps for it, kept or not."""

    task: str
    seed: int
    success: bool
    steps: int
    provenance: dict[str, Any]
    dream: Dream | None = None


def attempt_rows(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """Attempts as `ExperienceStore.add_dreams` rows (provenance and, for kept dreams, the thumbnail)."""
    return [{"task": a.task, "seed": a.seed, "success": a.success, "steps": a.steps, "provenance": a.provenance,
             "thumbnail": a.dream.thumbnail if a.dream is not None else None} for a in attempts]


class MimicDreamGenerator:
    """Dreams from recorded episodes in a private, domain-randomized simulator (see the module docstring).

    `dream(focus)` is the bridge's dreamer interface (as `DreamGenerator`; with a `store` it records every
    attempt's provenance there, one transaction per call); `generate` returns every attempt with its
    provenance; `stats` holds kept / attempted per task."""

    def __init__(self, sources: Sequence[SourceEpisode], config: MimicConfig | None = None,
                 task: str | Task | type[Task] | None = None, store: Any = None) -> None:
        self.config = c = config or MimicConfig()
        self.store = store
        if not sources:
            raise ValueError("A mimic dream generator needs at least one parsed source episode.")
        self.sources = list(sources)
        self.env = _make_env(task if task is not None else c.task, c.embodiment, c.variant, c.randomization,
                             c.image_size)
        self.ik = ArmIK(self.env.embodiment)
        self.task_name = self.env.task_name
        self.pools: dict[tuple[str, str], list[SourceSegment]] = {}
        for source in self.sources:
            for seg in source.segments:
                self.pools.setdefault((seg.kind, seg.reference), []).append(seg)
        self.periods = {o.name: yaw_period(o) for o in self.env.task.objects()}
        self.next_seed = c.seed_start
        self.stats: dict[str, dict[str, int]] = {}
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Dream no further episode after the one in flight."""
        self._cancel.set()

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ the bridge's interface
    def dream(self, focus: list[str] | None = None) -> list[Dream]:
        """Up to `episodes_per_cycle` successful dreams; `focus`: subtask languages to dream first."""
        c = self.config
        attempts = self.generate(c.episodes_per_cycle, c.episodes_per_cycle * c.max_attempts_factor, focus=focus)
        if self.store is not None and attempts:
            self.store.add_dreams(attempt_rows(attempts))
        return [a.dream for a in attempts if a.dream is not None]

    def generate(self, wanted: int, max_attempts: int, focus: list[str] | None = None,
                 scene_seeds: Sequence[int] | None = None) -> list[Attempt]:
        """Attempt dreams until `wanted` are kept or `max_attempts` were made. `scene_seeds` are tried first
        (e.g. the seeds of failed episodes: dream where the robot failed), then fresh seeds."""
        attempts: list[Attempt] = []
        seeds = list(scene_seeds or [])
        while sum(a.success for a in attempts) < wanted and len(attempts) < max_attempts:
            if self._cancel.is_set():
                break
            if seeds:
                seed = seeds.pop(0)
            else:
                seed, self.next_seed = self.next_seed, self.next_seed + 1
            first = focus[len(attempts) % len(focus)] if focus else None
            attempt = self.attempt(seed, first)
            attempts.append(attempt)
            counts = self.stats.setdefault(self.task_name, {"kept": 0, "attempted": 0})
            counts["attempted"] += 1
            counts["kept"] += int(attempt.success)
        return attempts

    # ------------------------------------------------------------------ one dream
    def _template(self, rng: np.random.Generator, first: str | None) -> SourceEpisode:
        if first is not None:
            leading = [s for s in self.sources if s.segments[0].language == first]
            if leading:
                return leading[int(rng.integers(len(leading)))]
        return self.sources[int(rng.integers(len(self.sources)))]

    def _select(self, kind: str, reference: str, where: np.ndarray, side: str | None, episode: str | None,
                rng: np.random.Generator, goal: np.ndarray | None = None,
                goal_name: str | None = None) -> SourceSegment | None:
        pool = self.pools.get((kind, reference), [])
        if side is not None:  # a release continues with the arm that holds the object
            pool = [s for s in pool if s.side == side]
        if episode is not None and any(s.episode == episode for s in pool):
            pool = [s for s in pool if s.episode == episode]
        if goal_name is not None:  # a push towards the same goal object
            pool = [s for s in pool if s.goal == goal_name]
        if not pool:
            return None
        def distance(s: SourceSegment) -> float:
            d = float(np.linalg.norm(s.ref_pos[:2] - where[:2]))
            if kind == PUSH and goal is not None and s.goal_pos is not None:
                # The goal relative to the object is the push itself (its heading and length); the object's
                # place keeps the source's arm within reach.
                return d + float(np.linalg.norm((s.goal_pos - s.ref_pos)[:2] - (goal - where)[:2]))
            if goal is not None and s.goal_pos is not None:
                d += float(np.linalg.norm(s.goal_pos[:2] - goal[:2]))
            return d

        ranked = sorted(pool, key=distance)
        top = ranked[: self.config.nearest_k]
        return top[int(rng.integers(len(top)))]

    def attempt(self, seed: int, first: str | None = None) -> Attempt:
        """One dream at `seed`: new layout from the task's `place`, transformed source segments, IK, success."""
        c, env, ik = self.config, self.env, self.ik
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        template = self._template(rng, first)
        ik.reset({s: env.state()[state_key(f"{s}_arm")] for s in SIDES})
        action = {k: v.copy() for k, v in env.home_action().items()}
        dt = 1.0 / env.config.control_hz
        rec: dict[str, list] = {"images": [], "subtask": []}
        provenance: dict[str, Any] = {"generator": "mimic", "task": self.task_name, "seed": seed,
                                      "randomization": c.randomization, "template": template.id, "segments": []}
        truncated = False
        holding: tuple[str, str] | None = None  # (side, episode) of the grasp in hand
        held_turn = 0.0  # the yaw the grasp in hand was turned by (its release keeps the wrist so turned)

        pairs = _object_target_pairs(template.segments)  # per slot: what its words name (grounding labels)
        rec["grounding"] = []

        def execute(side: str, pos: np.ndarray, quat: np.ndarray, hand: np.ndarray, language: str,
                    pair: tuple[str, str | None]) -> bool:
            nonlocal obs, truncated
            arm_key, hand_key = action_key(f"{side}_arm"), action_key(f"{side}_hand")
            ranges = env.action_ranges()
            for p, q, h in zip(pos, quat, hand, strict=True):
                action[arm_key] = np.clip(ik.solve(side, p, q), *ranges[arm_key].T).astype(np.float32)
                action[hand_key] = np.asarray(h, np.float32)
                rec["images"].append(obs[EGO_VIEW])
                rec["subtask"].append(language)
                rec["grounding"].append(named_positions(env, *pair))
                for k, v in (*((k, v) for k, v in obs.items() if k.startswith(STATE_PREFIX)), *action.items()):
                    rec.setdefault(k, []).append(np.array(v, copy=True))
                obs, _, _, truncated, _ = env.step({k: v.copy() for k, v in action.items()})
                if truncated:
                    return False
            return True

        ok = True
        for i, slot in enumerate(template.segments):
            where = env.scene.body_pos(slot.reference)
            side = holding[0] if slot.kind == RELEASE and holding else None
            following = template.segments[i + 1] if i + 1 < len(template.segments) else None
            goal = (env.scene.body_pos(following.reference)
                    if slot.kind == GRASP and following is not None and following.kind == RELEASE else None)
            if slot.kind == PUSH and slot.goal is not None:
                goal = env.scene.body_pos(slot.goal)
            seg = self._select(slot.kind, slot.reference, where, side, holding[1] if holding else None, rng, goal,
                               slot.goal if slot.kind == PUSH else None)
            if seg is None:
                ok = False
                provenance["failure"] = f"no source for {slot.kind} of {slot.reference}"
                break
            p0, q0 = ik.site_pose(seg.side)
            if seg.kind == PUSH and goal is not None and seg.goal_pos is not None:
                # The push's task frame (object -> goal) turned onto the new one: it heads at the new goal.
                d_yaw = push_turn(seg.ref_pos, seg.goal_pos, where, goal)
            else:
                new_yaw = yaw_of(env.scene.body_quat(slot.reference))
                d_yaw = least_turn(new_yaw - seg.ref_yaw, self.periods.get(slot.reference), q0, seg.ee_quat[0])
            rot, turn = np.zeros(9), yaw_quat(d_yaw)
            mujoco.mju_quat2Mat(rot, turn)
            rot = rot.reshape(3, 3)
            pos = where + (seg.ee_pos - seg.ref_pos) @ rot.T
            # A release keeps the wrist as the grasp turned it: the held object (between the fingers, at the
            # end-effector site) follows the source's path, and the hand makes no large turn while carrying.
            wrist = yaw_quat(d_yaw + held_turn) if seg.kind == RELEASE else turn
            quat = np.array([quat_mul(wrist, q) for q in seg.ee_quat])
            tp, tq = transit(p0, q0, pos[0], quat[0], c.transit_speed, dt, c.min_transit_steps)
            hand_now = np.repeat(action[action_key(f"{seg.side}_hand")][None], len(tp), axis=0)
            provenance["segments"].append({
                "kind": seg.kind, "reference": seg.reference, "source": seg.episode, "side": seg.side,
                "source_frames": list(seg.frames), "delta_pos": [round(float(v), 5) for v in where - seg.ref_pos],
                "delta_yaw": round(d_yaw, 5), "transit_steps": len(tp), "skill_steps": len(pos)})
            if seg.kind == PUSH and seg.goal is not None:
                provenance["segments"][-1]["goal"] = seg.goal
            if not (execute(seg.side, tp, tq, hand_now, seg.language, pairs[i])
                    and execute(seg.side, pos, quat, seg.hand, seg.language, pairs[i])):
                ok = False
                provenance["failure"] = "truncated"
                break
            holding = (seg.side, seg.episode) if seg.kind == GRASP else None
            held_turn = d_yaw if seg.kind == GRASP else 0.0
        if ok:  # hold still: the policy also sees the end of the task, and success must last
            last = {k: v.copy() for k, v in action.items()}
            for _ in range(c.tail_steps):
                rec["images"].append(obs[EGO_VIEW])
                rec["subtask"].append(rec["subtask"][-1] if rec["subtask"] else env.instruction)
                rec["grounding"].append(named_positions(env, *(pairs[-1] if pairs else (None, None))))
                for k, v in (*((k, v) for k, v in obs.items() if k.startswith(STATE_PREFIX)), *last.items()):
                    rec.setdefault(k, []).append(np.array(v, copy=True))
                obs, _, _, truncated, _ = env.step({k: v.copy() for k, v in last.items()})
                if truncated:
                    break
        success = bool(ok and env.is_success())
        steps = len(rec["images"])
        provenance["pairs"] = sorted({f"{o}->{t}" for o, t in pairs})
        provenance.update(success=success, steps=steps,
                          source_episodes=list(dict.fromkeys(s["source"] for s in provenance["segments"])))
        if not success:
            return Attempt(self.task_name, seed, False, steps, provenance)
        episode = self._augment(rec, rng, env, provenance)
        dream = Dream(self.task_name, seed, episode["task"], list(dict.fromkeys(rec["subtask"])), steps, episode,
                      _thumbnail(rec["images"][0], c.thumbnail_size), provenance)
        return Attempt(self.task_name, seed, True, steps, provenance, dream)

    def _augment(self, rec: dict[str, list], rng: np.random.Generator, env: TaskEnv,
                 provenance: dict[str, Any]) -> dict[str, Any]:
        """The training episode of a kept dream: colour-jittered frames, noisy states, a paraphrase."""
        c = self.config
        episode: dict[str, Any] = {k: (v if k == "subtask" else np.stack(v)) for k, v in rec.items()}
        episode["grounding_task"] = names_one_goal(provenance.get("pairs", []))
        gain = rng.uniform(1 - c.color_jitter, 1 + c.color_jitter, 3)
        episode["images"] = np.clip(episode["images"].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        for k in [k for k in episode if k.startswith(STATE_PREFIX)]:
            noise = rng.normal(0.0, c.state_noise_std, episode[k].shape) if c.state_noise_std > 0 else 0.0
            episode[k] = (episode[k] + noise).astype(np.float32)
        phrasings = env.task.instructions()
        task = phrasings[int(rng.integers(len(phrasings)))] if c.paraphrase else env.instruction
        episode["task"] = task
        if c.task_paraphrases:
            from sage_gr00t.plan.commands import instruction_paraphrases

            episode["task_paraphrases"] = instruction_paraphrases(env, c.task_paraphrases, int(rng.integers(2**31)))
        provenance["augment"] = {"color_gain": [round(float(g), 4) for g in gain],
                                 "state_noise_std": c.state_noise_std, "instruction": task}
        return episode



def mimic_dreamer(config: MimicConfig, datasets: Sequence[str | Path] = (), store: Any = None,
                  task: str | Task | type[Task] | None = None, store_sources: int = 10) -> MimicDreamGenerator:
    """A generator from recorded demonstrations and the store's newest successful episodes (the session's
    dreamer when `SessionConfig.dream_source == "mimic"`)."""
    recordings = [r for root in datasets for r in dataset_recordings(root)]
    if store is not None:
        recordings += store_recordings(store, config.task, limit=store_sources)
    return MimicDreamGenerator(parse_recordings(recordings, task if task is not None else config.task,
                                                config.skill_margin), config, task=task, store=store)
