"""Act: execute policy action chunks smoothly (L-module, safety filter and chunk execution live here)."""

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk

__all__ = ["ChunkExecutor", "ChunkExecutorConfig", "mean_squared_jerk"]
