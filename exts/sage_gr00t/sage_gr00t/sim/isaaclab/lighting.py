"""The tabletop scene's own lights on the Newton Warp renderer's G-buffer, shaded as MuJoCo's renderer does.

Why: Newton Warp's lighting model cannot express the scene's lights. It has one default directional light of
unit intensity (no colour or intensity per light), a fixed hemispheric ambient, and it treats shape colours
as sRGB (decoded to linear, lit, re-encoded to sRGB on output). The scene (`sim.scene.new_scene`) declares a
key light (diffuse 0.75), a fill light (0.3) and a headlight (ambient 0.35, diffuse 0.2), and MuJoCo's
OpenGL renderer multiplies the declared `rgba` by that lighting with no colour-space conversion. Drawn with
Newton's own light, the ego view came out washed out and grey (the table top (0.62, 0.47, 0.33) at
(184, 163, 139) instead of MuJoCo's (229, 173, 122)), with a 93% grey background where MuJoCo's is black.

So the camera renders Newton's albedo and world-space normal buffers and this module lights them with the
lights of the compiled MuJoCo scene, as OpenGL's fixed-function model does (what MuJoCo's renderer uses):

    colour = rgba * (ambient + sum_i diffuse_i max(0, n.L_i)) + sum_i [n.L_i > 0] specular_i * s * max(0, n.h_i)^e

over the key and fill lights and the headlight (a directional light along the camera's view axis), with the
material's specular s and exponent e = 128 * shininess, h_i the half vector between L_i and the direction
to the viewer, no shadows (the scene's lights cast none and MuJoCo's shadows are off), clipped to [0, 1], a
black background. Shape colours: MuJoCo multiplies the declared `rgba` by the light, so the albedo here must be
that `rgba`. Newton stores shape colours sRGB-encoded and decodes them to linear albedo, but the converted USD
files author colours in two ways it reads differently: `displayColor` (objects, table: taken as linear, so
encoded on import) and UsdPreviewSurface materials tagged sRGB (the robot: kept as they are, so decoded to
srgb_to_linear(rgba), darker: the robot's teal accents came out at ~half brightness). The startup event
`mdp.declared_shape_colors` therefore writes every shape's colour from its MJCF declaration (`declared_colors`),
encoded, so the decoded albedo is the MJCF `rgba` for every shape, in both lighting modes.

What this does not reproduce (the renderer gap left): MuJoCo lights per vertex on tessellated primitives,
Newton per pixel on exact surfaces; 8-bit albedo; MuJoCo's anti-aliasing settings (none here either).
Needs torch and mujoco, not Isaac Lab.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from sage_gr00t.sim.config import LIGHTINGS
from sage_gr00t.sim.embodiment import get_embodiment
from sage_gr00t.sim.scene import PhysicsConfig, TableConfig, new_scene

__all__ = ["LIGHTINGS", "SceneLighting", "camera_rays", "declared_colors", "decode_albedo", "geom_rgb",
           "linear_to_srgb", "quat_apply_xyzw", "shade", "srgb_to_linear", "to_uint8"]


@dataclass(frozen=True)
class SceneLighting:
    """The scene's lights and material response as MuJoCo's renderer applies them (world frame)."""

    ambient: np.ndarray  # (3,) headlight ambient + every light's ambient
    directions: np.ndarray  # (n, 3) direction each directional light shines in (MuJoCo's `light_dir`)
    diffuse: np.ndarray  # (n, 3)
    specular: np.ndarray  # (n, 3)
    headlight_diffuse: np.ndarray  # (3,)
    headlight_specular: np.ndarray  # (3,)
    material_specular: float  # MuJoCo's default material: 0.5
    shininess: float  # 0.5: exponent 64

    @classmethod
    def of_model(cls, model: mujoco.MjModel) -> SceneLighting:
        """The lights of a compiled scene; only what this port draws (directional lights, no shadows)."""
        for i in range(model.nlight):
            if int(model.light_type[i]) != int(mujoco.mjtLightType.mjLIGHT_DIRECTIONAL) or model.light_castshadow[i]:
                raise ValueError(f"Light {model.light(i).name!r}: only directional lights without shadows are ported "
                                 "to the Isaac Lab ego view.")
            if model.light_bodyid[i] != 0:
                raise ValueError(f"Light {model.light(i).name!r} is on a moving body; only world lights are ported.")
        # Every geom of the scene renders with MuJoCo's default material response (0.5 / 0.5), the robot's
        # materials included: one (specular, shininess) pair.
        specular, shininess = 0.5, 0.5
        if model.nmat and not (np.allclose(model.mat_specular, specular) and np.allclose(model.mat_shininess, shininess)
                               and np.allclose(model.mat_emission, 0.0)):
            raise ValueError("The scene's materials differ from MuJoCo's default specular / shininess / emission; "
                             "the Isaac Lab ego view lights every shape with one material response.")
        active = np.asarray(model.light_active, bool)
        head = model.vis.headlight
        return cls(
            ambient=np.asarray(head.ambient, float) + np.asarray(model.light_ambient[active], float).sum(0),
            directions=np.asarray(model.light_dir[active], float).copy(),
            diffuse=np.asarray(model.light_diffuse[active], float).copy(),
            specular=np.asarray(model.light_specular[active], float).copy(),
            headlight_diffuse=np.asarray(head.diffuse, float) * bool(head.active),
            headlight_specular=np.asarray(head.specular, float) * bool(head.active),
            material_specular=specular, shininess=shininess)

    @classmethod
    @functools.cache
    def of_scene(cls, embodiment: str, physics: PhysicsConfig = PhysicsConfig(),  # noqa: B008 (frozen)
                 table: TableConfig = TableConfig()) -> SceneLighting:  # noqa: B008
        """The lights `new_scene` declares for this embodiment (the embedded simulator's)."""
        return cls.of_model(new_scene(get_embodiment(embodiment), physics, table).compile())


# ------------------------------------------------------------------------------------------------ colours
def geom_rgb(model: mujoco.MjModel, geom: int) -> np.ndarray:
    """The colour MuJoCo draws a geom in: its material's where the geom's own rgba is left at the default."""
    rgba = model.geom_rgba[geom]
    matid = int(model.geom_matid[geom])
    if matid >= 0 and np.allclose(rgba, (0.5, 0.5, 0.5, 1.0)):
        rgba = model.mat_rgba[matid]
    return np.asarray(rgba[:3], float).copy()


def declared_colors(task, embodiment: str, table: TableConfig = TableConfig()) -> dict[str, dict[str, np.ndarray]]:  # noqa: B008
    """Entity (a prim name under the env: "Robot", "Table", an object or particle name) -> geom name -> the rgb
    MuJoCo draws it in, from the same declarations the USD files were converted from (and, for objects spawned
    from primitives, "<body>" / "visual_<i>" for their shapes)."""
    from sage_gr00t.sim.isaaclab.robot import robot_model
    from sage_gr00t.sim.isaaclab.spawners import embedded_model
    from sage_gr00t.sim.scene import table_geoms

    def of(model: mujoco.MjModel) -> dict[str, np.ndarray]:
        named = {model.geom(g).name: geom_rgb(model, g) for g in range(model.ngeom)}
        # Objects without a USD file are spawned from their geoms (`spawners`): the colliding geom is the body
        # shape ("<body>"), the others "visual_<i>" in declaration order.
        colliding = [g for g in range(model.ngeom) if model.geom_contype[g] or model.geom_conaffinity[g]]
        if len(colliding) == 1:
            named["<body>"] = geom_rgb(model, colliding[0])
            others = [g for g in range(model.ngeom) if g != colliding[0]]
            named.update({f"visual_{i}": geom_rgb(model, g) for i, g in enumerate(others)})
        return named

    scene = new_scene(get_embodiment(embodiment), PhysicsConfig(), table).compile()
    colors = {"Robot": of(robot_model(embodiment)),
              "Table": {**{g["name"]: np.asarray(g["rgba"][:3], float) for g in table_geoms(table)},
                        "floor": geom_rgb(scene, scene.geom("floor").id)}}
    for obj in task.objects():
        colors[obj.name] = of(embedded_model(obj))
    for particles in task.particles():
        one = of(embedded_model(particles))
        colors.update({f"{particles.name}{i}": one for i in range(particles.count)})
    return colors


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# sRGB decode table for 8-bit values (Newton packs albedo sRGB-encoded).
_SRGB_TO_LINEAR = torch.tensor([c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
                                for c in (np.arange(256) / 255.0)], dtype=torch.float32)


def decode_albedo(albedo: torch.Tensor) -> torch.Tensor:
    """(..., >= 3) uint8 sRGB-encoded albedo -> (..., 3) float32 linear in [0, 1] (= the MJCF rgba)."""
    table = _SRGB_TO_LINEAR.to(albedo.device)
    return table[albedo[..., :3].long()]


def camera_rays(intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H, W, 3) unit ray directions in the OpenGL camera frame (-z forward, +y up) through pixel centres."""
    k = intrinsics.to(torch.float32)
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=k.device) + 0.5,
                          torch.arange(width, dtype=torch.float32, device=k.device) + 0.5, indexing="ij")
    fx, fy, cx, cy = (k[:, 0, 0, None, None], k[:, 1, 1, None, None], k[:, 0, 2, None, None], k[:, 1, 2, None, None])
    rays = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(fx.expand(-1, height, width))], dim=-1)
    return rays / rays.norm(dim=-1, keepdim=True)


def quat_apply_xyzw(quat: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Rotate (N, ..., 3) vectors by (N, 4) unit quaternions (x, y, z, w), Isaac Lab 3's order."""
    shape = (quat.shape[0], *((1,) * (vectors.dim() - 2)), 3)
    w = quat[:, 3].reshape((*shape[:-1], 1))
    xyz = quat[:, :3].reshape(shape)
    t = 2.0 * torch.cross(xyz.expand_as(vectors), vectors, dim=-1)
    return vectors + w * t + torch.cross(xyz.expand_as(vectors), t, dim=-1)


def shade(albedo: torch.Tensor, normals: torch.Tensor, view_rays: torch.Tensor, camera_forward: torch.Tensor,
          lighting: SceneLighting, directions: torch.Tensor | None = None,
          diffuse: torch.Tensor | None = None) -> torch.Tensor:
    """MuJoCo's fixed-function lighting of a G-buffer; (N, H, W, 3) float32 in [0, 1].

    albedo (N, H, W, 3) linear (the MJCF rgba); normals (N, H, W, 3) world-space unit normals, zero where the
    ray hit nothing (drawn black, MuJoCo's background); view_rays (N, H, W, 3) world-space unit directions
    from the camera through each pixel (the viewer direction is their negative); camera_forward (N, 3) the
    camera's view axis (the headlight shines along it). `directions` / `diffuse` (N, n, 3): per-environment
    lights (randomized), else the nominal ones."""
    device = albedo.device
    n_env = albedo.shape[0]
    as_t = functools.partial(torch.as_tensor, dtype=torch.float32, device=device)
    if directions is None:
        directions = as_t(lighting.directions).expand(n_env, -1, -1)
    if diffuse is None:
        diffuse = as_t(lighting.diffuse).expand(n_env, -1, -1)
    specular = as_t(lighting.specular).expand(n_env, -1, -1)
    # The headlight: one more directional light, shining along the camera's view axis.
    forward = camera_forward / camera_forward.norm(dim=-1, keepdim=True)
    directions = torch.cat([directions, forward[:, None, :]], dim=1)
    diffuse = torch.cat([diffuse, as_t(lighting.headlight_diffuse).expand(n_env, 1, 3)], dim=1)
    specular = torch.cat([specular, as_t(lighting.headlight_specular).expand(n_env, 1, 3)], dim=1)
    to_light = -directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-9)  # (N, L, 3)

    hit = normals.norm(dim=-1, keepdim=True) > 0.5
    n_dot_l = torch.einsum("nhwc,nlc->nhwl", normals, to_light).clamp_min(0.0)  # (N, H, W, L)
    light = as_t(lighting.ambient) + torch.einsum("nhwl,nlc->nhwc", n_dot_l, diffuse)
    to_viewer = -view_rays
    half = to_light[:, None, None, :, :] + to_viewer[:, :, :, None, :]  # (N, H, W, L, 3)
    half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    n_dot_h = (normals[:, :, :, None, :] * half).sum(-1).clamp_min(0.0)
    highlight = torch.where(n_dot_l > 0, n_dot_h ** (128.0 * lighting.shininess), torch.zeros_like(n_dot_h))
    spec = lighting.material_specular * torch.einsum("nhwl,nlc->nhwc", highlight, specular)
    colour = (albedo * light + spec).clamp(0.0, 1.0)
    return torch.where(hit, colour, torch.zeros_like(colour))


def to_uint8(colour: torch.Tensor) -> torch.Tensor:
    return (colour * 255.0 + 0.5).to(torch.uint8)
