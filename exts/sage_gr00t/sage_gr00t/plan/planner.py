"""Inference API: `HModulePlanner.load(dir).plan(command, scene) -> PlanResult`."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sage_gr00t.plan.commands import REFUSALS, subtask_language
from sage_gr00t.plan.hmodule import STOP, FrozenTextEncoder, HModule, HModuleConfig, build_batch
from sage_gr00t.plan.language import gate, parse
from sage_gr00t.plan.scene import Scene, SceneObject
from sage_gr00t.plan.vocabulary import PICKABLE, POUR_SOURCES, POUR_TARGETS, RECEPTACLES
from sage_gr00t.skills import Subtask

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass
class PlanResult:
    subtasks: list[Subtask] = field(default_factory=list)
    refusal: str | None = None  # None, or one of unknown_object / impossible / garbage
    message: str = ""
    segments: int = 0  # reasoning segments run before the Q-head halted
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.refusal is None


def _seen(scene: Scene) -> str:
    return ", ".join(o.description for o in scene.objects) or "nothing"


def _role_problem(skill: str, o: SceneObject, t: SceneObject) -> str:
    """What the skill cannot do with these objects, by declared roles or the installed vocabulary's kinds."""
    from sage_gr00t.plan.language import has_role

    want = ("pour_source", "pour_target") if skill == "pour" else ("pickable", "receptacle")
    verb = skill.replace("_", " and ")
    if not has_role(o, want[0]):
        return f"I can't {verb} the {o.description}: it is not a {want[0].replace('_', ' ')}."
    if not has_role(t, want[1]):
        return f"I can't {verb} into or onto the {t.description}: it is not a {want[1].replace('_', ' ')}."
    return ""


def _subtasks(steps: list[tuple[str, SceneObject, SceneObject]]) -> list[Subtask]:
    """Plan steps as subtasks; a placement onto a target that is reached another way (a pad things are slid onto)
    takes the target's skill."""
    out = []
    for skill, o, t in steps:
        if skill == "pick_place":
            skill = t.place_skill
        out.append(Subtask(skill, o.name, t.name, subtask_language(skill, o, t)))
    return out


def plan_matches(refusal: str, steps: list[tuple[str, str, str]], result: PlanResult) -> bool:
    """Exact match: the same refusal reason, or the same (skill, object, target) sequence."""
    if refusal != "ok":
        return result.refusal == refusal
    return result.ok and [(s.skill, s.object_name, s.target_name) for s in result.subtasks] == list(steps)


class HModulePlanner:
    def __init__(self, model: HModule, encoder: FrozenTextEncoder) -> None:
        self.model, self.encoder = model.eval(), encoder

    @classmethod
    def load(cls, path: str | Path, encoder_dir: str | Path | None = None, device: str = "cpu") -> HModulePlanner:
        path = Path(path)
        cfg = HModuleConfig(**json.loads((path / CONFIG_FILE).read_text())["model"])
        model = HModule(cfg)
        weights = {k: v.float() for k, v in load_file(path / WEIGHTS_FILE).items()}  # shipped as fp16
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"Checkpoint {path} does not match HModule: missing {missing}, unexpected {unexpected}.")
        return cls(model.to(device), FrozenTextEncoder(encoder_dir, device, cfg.max_tokens))

    @staticmethod
    def save(model: HModule, path: str | Path, extra: dict | None = None) -> None:
        """Only the trainable H-module is saved, in fp16; the frozen MiniLM ships with its own package. Written
        whole or not at all (a temporary folder renamed over `path`)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps({"model": model.cfg.to_dict(), **(extra or {})}, indent=2))
        if path.is_dir():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)

    @torch.no_grad()
    def plan(self, command: str, scene: Scene) -> PlanResult:
        t0 = time.perf_counter()
        result = self._plan(command, scene)
        result.latency_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _plan(self, command: str, scene: Scene) -> PlanResult:
        """Gate -> deterministic grounding (language.py) -> the learned H-module where grounding is undecided."""
        why = gate(command)
        if why is not None:
            return PlanResult(refusal="garbage", message=f"I did not get an instruction ({why}). Tell me what "
                              "to move where, e.g. 'put the apple on the plate'.")
        if not scene.objects:
            return PlanResult(refusal="unknown_object", message="I see no objects on the table, so there is "
                              "nothing I can act on.")
        grounded = parse(command, scene)
        if grounded is not None:
            return self._from_parse(grounded, command, scene)
        return self._learned(command, scene)

    @torch.no_grad()
    def learned_plan(self, command: str, scene: Scene) -> PlanResult:
        """The learned H-module's answer alone, past the validity gate but without deterministic grounding: what
        sleep consolidates (a phrasing grounding decided is taught to the model, which then also answers the
        variants grounding cannot)."""
        why = gate(command)
        if why is not None or not scene.objects:
            return PlanResult(refusal="garbage" if why is not None else "unknown_object", message=why or "")
        return self._learned(command, scene)

    def _learned(self, command: str, scene: Scene) -> PlanResult:
        b = build_batch(self.encoder, [command], [scene], max_steps=self.model.cfg.max_steps)
        outs = self.model(b.tok, b.tok_mask, b.obj, b.obj_mask, adaptive=True)
        out = outs[-1]
        reason = REFUSALS[int(out.refusal[0].argmax())]
        objs = scene.objects
        if reason == "garbage":
            return PlanResult(refusal=reason, segments=len(outs),
                              message=f"I don't understand {command!r} as a manipulation instruction. Tell me "
                              "what to move where, e.g. 'put the apple on the plate'.")
        if reason == "unknown_object":
            s, e = int(out.span_start[0].argmax()), int(out.span_end[0].argmax())
            offs = b.offsets[0]
            words = command[int(offs[s][0]):int(offs[max(s, e)][1])].strip() or "that object"
            return PlanResult(refusal=reason, segments=len(outs),
                              message=f"I can't find a '{words}' in the scene (I see: {_seen(scene)}).")
        steps = []
        for k in range(self.model.cfg.max_steps):
            sk = int(out.skill[0, k].argmax())
            if sk == STOP:
                break
            o, t = objs[int(out.obj[0, k].argmax())], objs[int(out.tgt[0, k].argmax())]
            step = ("pour" if sk == 1 else "pick_place", o, t)
            # A step repeated verbatim is a no-op (the object is already there, the pitcher already
            # empty): a decoding artefact, never part of a plan.
            if all((s, a.name, b.name) != (step[0], o.name, t.name) for s, a, b in steps):
                steps.append(step)
        if reason == "impossible":
            return PlanResult(refusal=reason, segments=len(outs), message=self._impossible_message(steps, command))
        # Safety net: a plan the model calls ok must still respect what each skill can do.
        for skill, o, t in steps:
            problem = self._check(skill, o, t)
            if problem:
                return PlanResult(refusal="impossible", segments=len(outs), message=problem)
        if not steps:
            return PlanResult(refusal="impossible", segments=len(outs),
                              message=f"I understood {command!r} but found nothing to do in this scene.")
        subtasks = _subtasks(steps)
        return PlanResult(subtasks=subtasks, segments=len(outs))

    def _from_parse(self, p, command: str, scene: Scene) -> PlanResult:
        if p.refusal == "garbage":
            return PlanResult(refusal="garbage", message=f"I don't understand {command!r} as a manipulation "
                              f"instruction ({p.message}). Tell me what to move where, e.g. 'put the apple on the "
                              "plate'.")
        if p.refusal == "unknown_object":
            msg = p.message if p.message.startswith("which ") else \
                f"I can't find a '{p.message}' in the scene (I see: {_seen(scene)})."
            return PlanResult(refusal="unknown_object", message=msg[0].upper() + msg[1:] if msg.startswith("which")
                              else msg)
        if p.refusal == "impossible":
            return PlanResult(refusal="impossible", message=f"I can't do {command!r} here: {p.message}.")
        for skill, o, t in p.steps:
            problem = _role_problem(skill, o, t)
            if problem:
                return PlanResult(refusal="impossible", message=problem)
        return PlanResult(subtasks=_subtasks(p.steps))

    @staticmethod
    def _check(skill: str, obj: SceneObject, tgt: SceneObject) -> str:
        """What the skill cannot do with these objects ("" if it can): by their declared roles, or, for
        objects without one, by the kinds the planner was trained on."""
        obj_kind, tgt_kind = obj.kind, tgt.kind
        if obj.role and tgt.role:
            wanted = {"pour": ("pour_source", "pour_target")}.get(skill, ("pickable", "receptacle"))
            if (obj.role, tgt.role) == wanted:
                return ""
            if obj.role != wanted[0]:
                return f"I can't {skill.replace('_', ' and ')} the {obj_kind}: it is a {obj.role.replace('_', ' ')}."
            return f"I can't {skill.replace('_', ' and ')} into or onto the {tgt_kind}: it is a " \
                   f"{tgt.role.replace('_', ' ')}."
        if skill == "pour":
            if obj_kind not in POUR_SOURCES:
                return f"I can't pour from the {obj_kind}: only a {' or '.join(POUR_SOURCES)} holds water."
            if tgt_kind not in POUR_TARGETS:
                return f"I can't pour into the {tgt_kind}: I can only pour into a {' or '.join(POUR_TARGETS)}."
            return ""
        if obj_kind not in PICKABLE:
            return f"I can't pick up the {obj_kind} and place it somewhere: I can only move {', '.join(PICKABLE)}s."
        if tgt_kind not in RECEPTACLES:
            return f"I can't place things in or on the {tgt_kind}: targets are {', '.join(RECEPTACLES)}s."
        return ""

    def _impossible_message(self, steps: list, command: str) -> str:
        for skill, o, t in steps[:1]:
            problem = self._check(skill, o, t)
            if problem:
                return problem.replace(f"the {o.kind}", f"the {o.description}").replace(
                    f"the {t.kind}", f"the {t.description}")
        if "sort" in command.lower():
            return "I can't sort here: no block has a bin of its own colour in the scene."
        return f"I can't do {command!r} with the objects in this scene."
