"""Memory: SNARC salience decides what is remembered; a bounded working memory and a crash-safe
SQLite store keep it; the metabolic state machine decides when to consolidate it in sleep."""

from sage_gr00t.memory.metabolic import MetabolicConfig, MetabolicController, MetabolicInputs, MetabolicState
from sage_gr00t.memory.snarc import Experience, SNARCConfig, SNARCScorer, SNARCScores, hash_text
from sage_gr00t.memory.store import (
    BufferConfig,
    EpisodeRecord,
    ExperienceStore,
    SalienceBuffer,
    StoreConfig,
    pack_arrays,
    unpack_arrays,
)

__all__ = [
    "BufferConfig",
    "EpisodeRecord",
    "Experience",
    "ExperienceStore",
    "MetabolicConfig",
    "MetabolicController",
    "MetabolicInputs",
    "MetabolicState",
    "SNARCConfig",
    "SNARCScorer",
    "SNARCScores",
    "SalienceBuffer",
    "StoreConfig",
    "hash_text",
    "pack_arrays",
    "unpack_arrays",
]
