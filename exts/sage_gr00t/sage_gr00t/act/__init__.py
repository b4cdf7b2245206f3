"""Act: execute policy action chunks smoothly and safely (chunk executor, safety filter)."""

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk
from sage_gr00t.act.safety import Intervention, SafeCommand, SafetyFilter, SafetyFilterConfig

__all__ = [
    "ChunkExecutor",
    "ChunkExecutorConfig",
    "Intervention",
    "SafeCommand",
    "SafetyFilter",
    "SafetyFilterConfig",
    "mean_squared_jerk",
]
