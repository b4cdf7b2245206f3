"""H-module planner: language command + scene -> ordered subtasks, or a refusal with a reason."""

from sage_gr00t.plan.scene import Scene, SceneObject

__all__ = ["Scene", "SceneObject"]
