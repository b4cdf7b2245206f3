"""Learning in sleep: dreams (synthetic demonstrations made in simulation: `dreams` with the scripted expert,
`mimic` from recorded experience with no expert), the small policy updates that consolidate them, and sleep
cycles that keep only improvements (experience -> memory -> sleep -> better policy).

`learn.mimic` is imported on use (it pulls in the IK solver)."""

from sage_gr00t.learn.dreams import Dream, DreamConfig, DreamGenerator
from sage_gr00t.learn.sleep import SleepCycleConfig, SleepCycleRunner, SleepTrainer, SleepTrainingConfig

__all__ = ["Dream", "DreamConfig", "DreamGenerator", "SleepCycleConfig", "SleepCycleRunner", "SleepTrainer",
           "SleepTrainingConfig"]
