"""SAGE-GR00T benchmarks, one subcommand each; every one prints a table.

    sage-bench sim --embodiment sage_humanoid unitree_g1   # simulator steps/s and render ms, one core
    sage-bench policy                                      # policy latency per action chunk, one core
    sage-bench finetune-memory --sweep                     # N1.5 fine-tuning peak memory per configuration (GPU)
    sage-bench chunking                                    # jerk at chunk boundaries: none / blend / ensemble
    sage-bench safety                                      # safety filter cost per call
    sage-bench bridge                                      # SAGE bridge overhead per control step
    sage-bench faults --fault-steps 60                     # camera faults with vs without trust
    sage-bench dds --seeds 20                              # G1 expert through DDS vs the direct simulator
    sage-bench eval-throughput --workers 1 2               # sage-eval episodes/min at 1 and 2 worker processes
    sage-bench trust-convergence --episodes 8              # steps until trust settles after reliability changes
    sage-bench wake-learning --episodes 16                 # SAGE's success with wake learning on vs off

`sage-bench NAME --help` lists a benchmark's flags. The modules import numpy, torch and mujoco only once
they run, after pinning their CPU core (threads those libraries start inherit the pinning).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from sage_gr00t.cli._parsing import parse, parse_subcommands
from sage_gr00t.cli.bench import (
    bridge,
    chunking,
    dds,
    eval_throughput,
    faults,
    finetune_memory,
    policy,
    safety,
    sim,
    trust_convergence,
    wake_learning,
)

PROG = "sage-bench"
# name -> (config class, runner, module docstring for `sage-bench NAME --help`)
BENCHES: dict[str, tuple[type, Callable[[Any], int], str | None]] = {
    "sim": (sim.SimBenchConfig, sim.run, sim.__doc__),
    "policy": (policy.PolicyBenchConfig, policy.run, policy.__doc__),
    "finetune-memory": (finetune_memory.FinetuneMemoryBenchConfig, finetune_memory.run, finetune_memory.__doc__),
    "chunking": (chunking.ChunkingBenchConfig, chunking.run, chunking.__doc__),
    "safety": (safety.SafetyBenchConfig, safety.run, safety.__doc__),
    "bridge": (bridge.BridgeBenchConfig, bridge.run, bridge.__doc__),
    "faults": (faults.FaultsBenchConfig, faults.run, faults.__doc__),
    "dds": (dds.DdsBenchConfig, dds.run, dds.__doc__),
    "eval-throughput": (eval_throughput.EvalThroughputBenchConfig, eval_throughput.run, eval_throughput.__doc__),
    "trust-convergence": (trust_convergence.TrustConvergenceConfig, trust_convergence.run,
                          trust_convergence.__doc__),
    "wake-learning": (wake_learning.WakeLearningBenchConfig, wake_learning.run, wake_learning.__doc__),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in BENCHES:
        # The benchmark's own parser: `sage-bench NAME --help` shows its whole description, which the
        # subcommand list below would repeat for every benchmark.
        config, run, doc = BENCHES[argv[0]]
        return run(parse(config, argv[1:], prog=f"{PROG} {argv[0]}", description=doc))
    # No or an unknown benchmark: tyro lists them (one line each) or names the bad choice.
    commands = {name: (config, (doc or "").strip().splitlines()[0]) for name, (config, _, doc) in BENCHES.items()}
    cfg = parse_subcommands(commands, argv, prog=PROG, description=__doc__)
    return next(run for config, run, _ in BENCHES.values() if isinstance(cfg, config))(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
