"""Smoothness at action-chunk boundaries: mean squared jerk and success with each execution mode.

    sage-bench chunking --policy assets/policies/gr00t_compact --task pick_apple --episodes 20

Runs the same seeds closed loop with `none` (execute 8 of 16 steps, then re-query: upstream's behaviour),
`blend` (cross-fade old/new chunk over 4 steps) and `ensemble` (ACT-style temporal ensembling); the scripted
expert (one-step chunks) is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from sage_gr00t.cli._parsing import check, error, parse

PROG = "sage-bench chunking"


@dataclass
class ChunkingBenchConfig:
    """One policy on the same seeds under every chunk execution mode, and the scripted expert."""

    policy: str = "assets/policies/gr00t_compact"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    task: str = "pick_apple"  # a task name (sage_gr00t.tasks.task_names())
    episodes: int = 20  # seeds per mode
    seed_start: int = 2000  # first seed (held out from the demonstrations' 0, 1, ...)
    execute_steps: int = 8  # steps executed from each chunk before the policy is queried again

    def __post_init__(self) -> None:
        from sage_gr00t.tasks import get_task  # here: importing the registry at module level would load mujoco

        get_task(self.task)  # UnknownTaskError (a ValueError) lists the installed tasks
        check(self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}.")
        check(self.execute_steps >= 1, f"--execute-steps must be >= 1, got {self.execute_steps}.")


def run(cfg: ChunkingBenchConfig) -> int:
    import numpy as np

    from sage_gr00t.act.chunking import MODES, ChunkExecutorConfig
    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.evaluation import run_episode, summarize
    from sage_gr00t.policy.factory import PolicySpecError, make_policy
    from sage_gr00t.tasks import make_env

    env = make_env(cfg.task)
    try:
        seeds = range(cfg.seed_start, cfg.seed_start + cfg.episodes)
        rows = []
        expert = [run_episode(env, make_policy("expert", env), s) for s in seeds]
        rows.append(("scripted expert (reference)", summarize(expert)))
        for mode in MODES:
            # A fresh policy per mode: every mode starts from the same flow-matching noise stream.
            try:
                policy = make_policy(cfg.policy, env, "cpu")
            except PolicySpecError as exc:
                return error(PROG, str(exc))
            config = ChunkExecutorConfig(mode=mode, execute_steps=cfg.execute_steps)
            results = [run_episode(env, policy, s, chunking=config) for s in seeds]
            rows.append((f"GR00T compact, {mode}", summarize(results)))
    finally:
        env.close()

    table = new_table(f"Chunk execution on {cfg.task}, {cfg.episodes} seeds from {cfg.seed_start}, "
                      f"re-query every {cfg.execute_steps} steps",
                      ("executor", "success", "mean squared jerk (rad^2/s^6)", "jerk vs none"), left=("executor",))
    none_jerk = next(s["arm_jerk"] for name, s in rows if name.endswith("none"))
    for name, summary in rows:
        table.add_row(name, f"{summary['success_rate']:.0%}", f"{summary['arm_jerk']:,.0f}",
                      f"{summary['arm_jerk'] / none_jerk:.2f}x" if np.isfinite(none_jerk) and none_jerk else "-")
    print_tables(table, width=120)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(ChunkingBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
