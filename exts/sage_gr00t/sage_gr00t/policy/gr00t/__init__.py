"""GR00T N1.5 architecture, implemented here: config presets, model, checkpoints, processor and policy."""

from sage_gr00t.policy.gr00t.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sage_gr00t.policy.gr00t.config import PRESETS, Gr00tConfig, compact_config, n15_config
from sage_gr00t.policy.gr00t.model import Gr00tModel, count_parameters
from sage_gr00t.policy.gr00t.policy import Gr00tNativePolicy, load_policy
from sage_gr00t.policy.gr00t.processor import EmbodimentMetadata, Gr00tProcessor, ObservationError

__all__ = [
    "PRESETS",
    "CheckpointError",
    "EmbodimentMetadata",
    "Gr00tConfig",
    "Gr00tModel",
    "Gr00tNativePolicy",
    "Gr00tProcessor",
    "ObservationError",
    "compact_config",
    "count_parameters",
    "load_checkpoint",
    "load_policy",
    "n15_config",
    "save_checkpoint",
]
