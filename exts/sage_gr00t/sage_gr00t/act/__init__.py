"""Act: execute a plan's subtasks (plan executor -> L-module) through policy action chunks, smoothly and
safely (chunk executor, safety filter)."""

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk
from sage_gr00t.act.lmodule import LModule, LModuleConfig, PerceivedState
from sage_gr00t.act.plan_executor import PlanExecutor, PlanStep, SubtaskEvent
from sage_gr00t.act.safety import Intervention, SafeCommand, SafetyFilter, SafetyFilterConfig

__all__ = [
    "ChunkExecutor",
    "ChunkExecutorConfig",
    "Intervention",
    "LModule",
    "LModuleConfig",
    "PerceivedState",
    "PlanExecutor",
    "PlanStep",
    "SafeCommand",
    "SafetyFilter",
    "SafetyFilterConfig",
    "SubtaskEvent",
    "mean_squared_jerk",
]
