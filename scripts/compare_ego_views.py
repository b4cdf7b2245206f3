#!/usr/bin/env python
"""The same seed's ego view in both backends, side by side, with per-object colour statistics.

    python scripts/compare_ego_views.py --task pick_apple --seed 1000 --out docs/ego_mujoco_vs_isaaclab_after.png
    python scripts/compare_ego_views.py --task sort_blocks --lighting renderer --json outputs/transfer/views.json

Left the embedded MuJoCo frame, right Isaac Lab's (kit-less Newton, Warp renderer), after the reset (settled).
Object masks come from MuJoCo's segmentation render of the same camera: both backends place the same layout
from the seed, so a mask selects the same object in both frames (an object that sank or moved in Isaac Lab
shows as a colour difference in its mask). Printed per mask: mean RGB in each backend and the mean absolute
difference; overall: mean absolute difference and PSNR. Also: the camera pose and vertical FOV each backend
reports, and the joint-space tracking of the same open-loop action sequence (the scripted expert's, recorded in
MuJoCo, replayed in Isaac Lab), which checks joint order, gains and action scaling.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mujoco
import numpy as np
from PIL import Image

from sage_gr00t.modality import EGO_CAMERA, EGO_VIEW
from sage_gr00t.tasks import make_env


def segment_masks(env, height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean masks of the ego view from MuJoCo's segmentation render: each task object, the table, the floor,
    the robot and the background."""
    model, data = env.model, env.data
    renderer = mujoco.Renderer(model, height, width)
    try:
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera=EGO_CAMERA)
        seg = renderer.render()
    finally:
        renderer.close()
    geom = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    body_of_geom = np.append(model.geom_bodyid, -1)  # index -1: background
    body = body_of_geom[geom]
    masks: dict[str, np.ndarray] = {"background": geom < 0}
    names = [model.body(b).name for b in range(model.nbody)]
    objects = set(env.task.object_names())
    robot = np.zeros_like(masks["background"])
    for b, name in enumerate(names):
        hit = body == b
        if not hit.any():
            continue
        if name in objects:
            masks[name] = hit
        elif name == "table":
            masks["table"] = hit
        elif b == 0:
            floor = hit & (geom == model.geom("floor").id)
            masks["floor"] = floor
        else:
            robot |= hit
    masks["robot"] = robot
    return masks


def colour_stats(mj: np.ndarray, il: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict]:
    stats = {}
    for name, mask in masks.items():
        if not mask.any():
            continue
        a, b = mj[mask].astype(float), il[mask].astype(float)
        stats[name] = {"pixels": int(mask.sum()), "mujoco_rgb": a.mean(0).round(1).tolist(),
                       "isaaclab_rgb": b.mean(0).round(1).tolist(),
                       "mean_abs_diff": round(float(np.abs(a - b).mean()), 1)}
    diff = np.abs(mj.astype(float) - il.astype(float))
    mse = float((diff ** 2).mean())
    stats["image"] = {"mean_abs_diff": round(float(diff.mean()), 2),
                      "psnr_db": round(10 * np.log10(255.0 ** 2 / max(mse, 1e-9)), 2)}
    return stats


def expert_actions(env, seed: int, steps: int) -> tuple[list[dict], np.ndarray]:
    """The scripted expert's first `steps` actions in the embedded simulator (an open-loop sequence to replay)."""
    from sage_gr00t.act.chunking import ChunkExecutor
    from sage_gr00t.experts.policy import ExpertPolicy

    executor = ChunkExecutor(ExpertPolicy(env))
    obs, _ = env.reset(seed=seed)
    executor.reset()
    actions, states = [], []
    for _ in range(steps):
        action = executor.act(obs)
        actions.append({k: np.asarray(v, np.float32).copy() for k, v in action.items()})
        obs, *_ = env.step(action)
        states.append(np.concatenate([np.asarray(v) for k, v in sorted(env.state().items())]))
    return actions, np.array(states)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pick_apple")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224, help="ego view height = width (the policies' 224)")
    parser.add_argument("--lighting", default="scene", choices=("scene", "renderer"), help="Isaac Lab ego view")
    parser.add_argument("--out", type=Path, help="side-by-side PNG (MuJoCo left, Isaac Lab right), 2x upscaled")
    parser.add_argument("--json", type=Path, help="write the statistics here")
    parser.add_argument("--replay-steps", type=int, default=60, help="expert steps replayed open loop (0: skip)")
    args = parser.parse_args(argv)

    size = dict(image_height=args.size, image_width=args.size)
    embedded = make_env(args.task, **size)
    mj_obs, _ = embedded.reset(seed=args.seed)
    masks = segment_masks(embedded, args.size, args.size)
    cid = embedded.model.camera(EGO_CAMERA).id
    mj_camera = {"pos": embedded.data.cam_xpos[cid].round(4).tolist(), "fovy": float(embedded.model.cam_fovy[cid])}
    actions, mj_states = expert_actions(embedded, args.seed, args.replay_steps) if args.replay_steps else ([], None)
    embedded.close()

    lighting = {} if args.lighting == "scene" else {"lighting": args.lighting}  # (default: also older checkouts)
    env = make_env(args.task, backend="isaaclab", **lighting, **size)
    try:
        il_obs, _ = env.reset(seed=args.seed)
        camera = env.env.scene[EGO_CAMERA]
        k = camera.data.intrinsic_matrices.torch[0].cpu().numpy()
        il_camera = {"pos": camera.data.pos_w.torch[0].cpu().numpy().round(4).tolist(),
                     "fovy": float(np.rad2deg(2 * np.arctan(args.size / 2 / k[1, 1])))}
        tracking = None
        if actions:
            states = []
            for action in actions:
                env.step(action)
                states.append(np.concatenate([np.asarray(v) for k, v in sorted(env.state().items())]))
            err = np.abs(np.array(states) - mj_states)
            tracking = {"steps": len(actions), "mean_abs_joint_diff_rad": float(f"{err.mean():.3g}"),
                        "max_abs_joint_diff_rad": float(f"{err.max():.3g}")}
    finally:
        env.close()

    mj, il = mj_obs[EGO_VIEW], il_obs[EGO_VIEW]
    report = {"task": args.task, "seed": args.seed, "lighting": args.lighting,
              "camera": {"mujoco": mj_camera, "isaaclab": il_camera}, "colours": colour_stats(mj, il, masks),
              "open_loop_tracking": tracking}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pair = Image.fromarray(np.concatenate([mj, il], axis=1))
        pair.resize((pair.width * 2, pair.height * 2), Image.NEAREST).save(args.out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
