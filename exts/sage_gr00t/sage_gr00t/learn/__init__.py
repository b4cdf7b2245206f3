"""Learning in sleep: dreams (synthetic demonstrations made in simulation) and the small policy
updates that consolidate them (experience -> memory -> sleep -> better policy)."""

from sage_gr00t.learn.dreams import Dream, DreamConfig, DreamGenerator
from sage_gr00t.learn.sleep import SleepTrainer, SleepTrainingConfig

__all__ = ["Dream", "DreamConfig", "DreamGenerator", "SleepTrainer", "SleepTrainingConfig"]
