"""One session builder: env, policy, planner, bridge, memory, dreamer and sleep trainer from one config.

Evaluation (`sage-eval`), the web panel, the Kit extension (its settings map onto `SessionConfig`) and
the benchmarks all assemble their controller here, so a policy spec, a backend or a bridge setting means
the same thing everywhere.

    session = build_session(SessionConfig(task="sort_blocks", controller="sage"))
    obs, _ = session.env.reset(seed=1000)
    session.bridge.reset(obs); session.bridge.command("sort the blocks by colour")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sage_gr00t.act.chunking import MODES, ChunkExecutorConfig
from sage_gr00t.act.lmodule import LModuleConfig
from sage_gr00t.bridge import BridgeConfig, SAGEGr00TBridge
from sage_gr00t.learn.planner_sleep import PlannerSleepConfig
from sage_gr00t.learn.wake import WakeLearner, WakeLearningConfig
from sage_gr00t.memory import ExperienceStore, MetabolicController
from sage_gr00t.memory.metabolic import MetabolicConfig
from sage_gr00t.policy.base import Policy
from sage_gr00t.policy.factory import make_policy, resolve_path
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import BACKENDS, TaskEnv, make_env

if TYPE_CHECKING:
    from sage_gr00t.act.sim_to_real import SimToRealAdapterConfig

CONTROLLERS = ("policy", "sage")
LANGUAGE_MODES = ("command", "subtask")
RANDOMIZATION_PROFILES = ("none", "train", "strong")
DREAM_SOURCES = ("expert", "mimic")


@dataclass
class SessionConfig:
    """Everything that decides what runs: the task and simulator, the policy, and SAGE around it."""

    task: str = "pick_apple"
    backend: str = "mujoco"  # embedded MuJoCo, or Isaac Lab 3.0 (kit-less Newton; needs the isaaclab extra)
    embodiment: str = "sage_humanoid"
    variant: str = "train"
    randomization: str = "none"  # a profile of config/domain_randomization.yaml
    task_options: dict[str, Any] = field(default_factory=dict)  # TaskConfig overrides, e.g. image_height
    policy: str = "assets/policies/gr00t_compact"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    device: str = "cpu"
    controller: str = "policy"  # policy: the policy alone on the task's instruction; sage: SAGEGr00TBridge
    planner: str = "assets/planner"  # H-module checkpoint (controller sage)
    language_mode: str = "subtask"  # what the policy reads under SAGE: each subtask's language, or the command
    chunk_mode: str = "blend"  # action-chunk execution across chunk boundaries
    execute_steps: int = 8  # steps executed per chunk before re-querying
    inference_delay: int = 0  # control steps between the observation a chunk is computed from and its first use
    async_inference: str = "simulated"  # simulated: the delay is exactly inference_delay; thread: measured
    use_trust: bool = True  # False: the no-trust ablation
    camera_every: int = 4  # SAGE's camera frames every k-th control step (5 Hz)
    memory_path: str | None = None  # SQLite experience store (None: no persistent store)
    dream_episodes: int = 0  # episodes dreamt per sleep cycle (0: replay only, no dreamer)
    # expert: the scripted expert in a private simulator; mimic: recorded episodes (`dream_datasets` and the
    # store's successes) transformed to new scenes, no expert (learn/mimic.py)
    dream_source: str = "expert"
    dream_datasets: list[str] = field(default_factory=list)  # LeRobot datasets a mimic dreamer starts from
    dream_image_size: int = 128
    thumbnail_size: int = 64
    sleep_training_steps: int = 0  # consolidation updates per sleep cycle for a learned policy
    metabolic: MetabolicConfig = field(default_factory=MetabolicConfig)
    # Wake learning (controller sage, a learned policy): small trust-gated updates from successful subtasks while
    # running, reverted when recent success drops (learn/wake.py). Off by default; `--wake.enabled` turns it on.
    wake: WakeLearningConfig = field(default_factory=WakeLearningConfig)
    # Sleep also teaches the H-module the commands successful episodes confirmed (learn/planner_sleep.py); the
    # kept weights stay in this session unless `planner_sleep.out` names a checkpoint folder to rewrite.
    planner_sleep: PlannerSleepConfig | None = None
    # Plain policy: wrap it in a SimToRealAdapter calibrated on this session's env (act/sim_to_real.py: colour
    # calibration, latency compensation, action smoothing, slow start)
    adapter: bool = False
    adapter_options: dict[str, Any] = field(default_factory=dict)  # SimToRealAdapterConfig overrides

    def __post_init__(self) -> None:
        for name, value, allowed in (("backend", self.backend, BACKENDS), ("controller", self.controller, CONTROLLERS),
                                     ("language_mode", self.language_mode, LANGUAGE_MODES),
                                     ("randomization", self.randomization, RANDOMIZATION_PROFILES),
                                     ("chunk_mode", self.chunk_mode, MODES),
                                     ("dream_source", self.dream_source, DREAM_SOURCES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.execute_steps < 1 or self.camera_every < 1:
            raise ValueError("execute_steps and camera_every must be >= 1.")
        self.chunking  # noqa: B018 -- the chunk options checked now (one clear line), not at the first step
        if self.adapter and self.controller != "policy":
            raise ValueError("adapter wraps a plain policy (controller 'policy'); SAGE runs its own safety filter "
                             "and speed scale.")
        if self.adapter:
            self.adapter_config()  # bad adapter options: one clear line now

    @property
    def chunking(self) -> ChunkExecutorConfig:
        return ChunkExecutorConfig(mode=self.chunk_mode, execute_steps=self.execute_steps,
                                   delay_steps=self.inference_delay, async_mode=self.async_inference)

    def adapter_config(self) -> SimToRealAdapterConfig:
        from sage_gr00t.act.sim_to_real import adapter_config

        return adapter_config(self.adapter_options)

    def bridge_config(self) -> BridgeConfig:
        return BridgeConfig(lmodule=LModuleConfig(language_mode=self.language_mode, chunking=self.chunking),
                            use_trust=self.use_trust, camera_every=self.camera_every,
                            planner_sleep=self.planner_sleep)


@dataclass
class Session:
    """The assembled parts; `close()` releases what the session itself made."""

    config: SessionConfig
    env: TaskEnv
    policy: Policy
    bridge: SAGEGr00TBridge | None = None
    planner: Any = None
    store: ExperienceStore | None = None
    dreamer: Any = None
    sleep_trainer: Any = None
    wake: WakeLearner | None = None
    owns_env: bool = True

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.dreamer is not None:  # its private simulator
            self.dreamer.close()
        if self.owns_env:
            self.env.close()


def build_env(config: SessionConfig) -> TaskEnv:
    randomization = DomainRandomizationConfig.from_yaml(profile=config.randomization)
    return make_env(config.task, backend=config.backend, embodiment=config.embodiment, variant=config.variant,
                    randomization=randomization, **config.task_options)


def build_session(config: SessionConfig, *, env: TaskEnv | None = None, policy: Policy | None = None,
                  planner: Any = None, bridge_cls: type[SAGEGr00TBridge] = SAGEGr00TBridge,
                  with_bridge: bool | None = None) -> Session:
    """Assemble a session. Given parts (an env, a policy, a planner) are used as they are; the bridge is
    built for `controller="sage"` (or `with_bridge=True`), of class `bridge_cls` (the panel's subclass)."""
    owns_env = env is None
    env = env if env is not None else build_env(config)
    session: Session | None = None
    try:
        policy = policy if policy is not None else make_policy(config.policy, env, config.device)
        if config.adapter:
            from sage_gr00t.act.sim_to_real import SimToRealAdapter

            policy = SimToRealAdapter.calibrated(policy, env, config.adapter_config())
        session = Session(config, env, policy, owns_env=owns_env)
        if with_bridge is None:
            with_bridge = config.controller == "sage"
        if not with_bridge:
            return session
        if planner is None:
            from sage_gr00t.plan.planner import HModulePlanner

            planner = HModulePlanner.load(resolve_path(config.planner), device=config.device)
        session.planner = planner
        if config.memory_path:
            session.store = ExperienceStore(config.memory_path)
        if config.dream_episodes > 0 and config.dream_source == "mimic":
            from sage_gr00t.learn.mimic import MimicConfig, mimic_dreamer

            session.dreamer = mimic_dreamer(
                MimicConfig(task=env.task_name, embodiment=config.embodiment, variant=config.variant,
                            episodes_per_cycle=config.dream_episodes, image_size=config.dream_image_size,
                            thumbnail_size=config.thumbnail_size),
                [resolve_path(d) for d in config.dream_datasets], session.store, task=type(env.task))
        elif config.dream_episodes > 0:
            from sage_gr00t.learn import DreamConfig, DreamGenerator

            session.dreamer = DreamGenerator(DreamConfig(
                task=env.task_name, embodiment=config.embodiment, episodes_per_cycle=config.dream_episodes,
                image_size=config.dream_image_size, thumbnail_size=config.thumbnail_size))
        if config.dream_episodes > 0 and config.sleep_training_steps > 0 and hasattr(policy, "model"):
            from sage_gr00t.learn import SleepTrainer, SleepTrainingConfig

            session.sleep_trainer = SleepTrainer(policy, SleepTrainingConfig(steps=config.sleep_training_steps))
        if config.wake.enabled:
            if not hasattr(policy, "model"):
                raise ValueError(f"wake learning trains the policy's weights; policy {config.policy!r} has none "
                                 "(use a checkpoint folder).")
            session.wake = WakeLearner(policy, config.wake)
        session.bridge = bridge_cls(policy, env, planner, config.bridge_config(), store=session.store,
                                    metabolic=MetabolicController(config.metabolic), dreamer=session.dreamer,
                                    sleep_trainer=session.sleep_trainer, wake=session.wake)
        return session
    except BaseException:
        if session is not None:
            session.close()
        elif owns_env:
            env.close()
        raise
