"""The scripted expert behind the `Policy` interface (privileged: it reads simulator state)."""

from __future__ import annotations

import numpy as np

from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
from sage_gr00t.tasks.protocols import TaskEnv


class ExpertPolicy:
    def __init__(self, env: TaskEnv, config: ExpertConfig | None = None) -> None:
        self.expert = ScriptedExpert(env, config)

    def reset(self) -> None:
        self.expert.reset()

    @property
    def done(self) -> bool:
        return self.expert.done

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return {k: v[None] for k, v in self.expert.act(observation).items()}
