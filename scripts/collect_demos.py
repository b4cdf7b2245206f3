#!/usr/bin/env python
"""Collect scripted-expert demonstrations into a GR00T LeRobot dataset.

    python scripts/collect_demos.py --task pick_apple --embodiment sage_humanoid --episodes 50 \
        --out outputs/datasets/pick_apple_sage --randomization train --image-size 224

Seeds `--seed-start, +1, ...` are tried in order; only successful episodes are kept, each written the
moment it ends. `--episodes` is the number of episodes the dataset should hold in total.

Interrupting (Ctrl-C or SIGTERM) stops after the current control step, drops the unfinished episode
and finalizes the dataset: every finished episode stays loadable. A second Ctrl-C aborts at once (the
dataset is still finalized on the way out). Re-running with the same `--out` resumes: it checks that
task, embodiment, randomization and image size match, then continues from the first untried seed
(ignoring `--seed-start`) until the dataset holds `--episodes` episodes. After a hard kill (SIGKILL),
the next run rolls back to the last checkpoint (every `--checkpoint-every` episodes).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from sage_gr00t.data.collect import CollectionState, EpisodeOutcome, collect_episodes
from sage_gr00t.data.lerobot_dataset import DatasetLayout, GrootDatasetWriter
from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t_tasks import make_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick_apple")
    p.add_argument("--embodiment", default="sage_humanoid")
    p.add_argument("--variant", default="train", help="task variant (train or novel)")
    p.add_argument("--episodes", type=int, default=50, help="successful episodes the dataset should hold")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (created, or resumed)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed of a new dataset")
    p.add_argument("--randomization", choices=("none", "train", "strong"), default="none")
    p.add_argument("--image-size", type=int, default=224, help="square ego_view size in pixels")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="stop after this many attempts in this run (default: 3 x episodes still needed)")
    p.add_argument("--tail-steps", type=int, default=5, help="steps recorded after the expert's plan ends")
    p.add_argument("--checkpoint-every", type=int, default=10,
                   help="finalize+snapshot every N episodes (bounds the loss after a hard kill)")
    p.add_argument("--storage", choices=("video", "image"), default="video",
                   help="ego_view as mp4 (GR00T's format) or as PNG images inside the parquet files")
    p.add_argument("--vcodec", default="h264", help="video codec (h264 decodes everywhere; libsvtav1 = AV1)")
    p.add_argument("--crf", type=int, default=18, help="video quality (lower is better, bigger)")
    p.add_argument("--plan-order", choices=("task", "shuffled"), default="task",
                   help="subtask order of multi-object tasks: the task's own, or the instruction's / a seeded "
                        "random one (for policies trained on per-subtask language)")
    return p.parse_args(argv)


class _StopFlag:
    """SIGINT/SIGTERM set a flag checked between control steps; a second SIGINT raises at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        tqdm.write(f"{name}: finishing the current step, dropping the unfinished episode, finalizing...")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = {
        "task": args.task, "embodiment": args.embodiment, "variant": args.variant,
        "randomization": args.randomization, "image_size": args.image_size, "tail_steps": args.tail_steps,
        "plan_order": args.plan_order,
    }
    state = CollectionState.load(args.out)
    if state is not None:
        mismatch = {k: (state.settings.get(k), v) for k, v in settings.items()
                    if state.settings.get(k, "task" if k == "plan_order" else None) != v}
        if mismatch:
            print(f"error: {args.out} was collected with other settings (stored, requested): {mismatch}",
                  file=sys.stderr)
            return 2
    else:
        state = CollectionState(settings=settings, next_seed=args.seed_start)

    randomization = DomainRandomizationConfig.from_yaml(profile=args.randomization)
    env = make_env(args.task, embodiment=args.embodiment, variant=args.variant, randomization=randomization,
                   image_height=args.image_size, image_width=args.image_size)
    expert = ScriptedExpert(env, ExpertConfig(plan_order=args.plan_order))
    layout = DatasetLayout.from_env(env)

    stop = _StopFlag()
    previous = {s: signal.signal(s, stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    outcomes: list[EpisodeOutcome] = []
    try:
        with GrootDatasetWriter(args.out, layout, use_videos=args.storage == "video", vcodec=args.vcodec,
                                crf=args.crf, checkpoint_every=args.checkpoint_every) as writer:
            # A kill between saving an episode and saving the state must not reuse that episode's seed.
            recorded = [r.seed for r in writer.records if r.seed is not None]
            state.next_seed = max([state.next_seed, *(s + 1 for s in recorded)])
            have = writer.num_episodes
            if have:
                print(f"Resuming {args.out}: {have} episodes, next seed {state.next_seed}.")
            needed = max(0, args.episodes - have)
            max_attempts = args.max_attempts if args.max_attempts is not None else 3 * needed
            bar = tqdm(total=args.episodes, initial=have, unit="ep", desc=f"{args.task}/{args.embodiment}")

            def on_outcome(o: EpisodeOutcome) -> None:
                outcomes.append(o)
                if o.success:
                    bar.update(1)
                fails = sum(not x.success for x in outcomes)
                bar.set_postfix(seed=o.seed, failed=fails, steps=o.steps)

            try:
                collect_episodes(
                    env, expert, writer, target_episodes=args.episodes, state=state,
                    max_attempts=max_attempts, tail_steps=args.tail_steps, should_stop=stop,
                    on_outcome=on_outcome,
                    episode_extra={"task_name": args.task, "embodiment": args.embodiment,
                                   "variant": args.variant, "randomization": args.randomization},
                )
            finally:
                bar.close()
                total = writer.num_episodes
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        env.close()

    elapsed = time.perf_counter() - start
    kept = sum(o.success for o in outcomes)
    failed = [o.seed for o in outcomes if not o.success]
    print(f"Kept {kept}/{len(outcomes)} attempts this run ({len(failed)} failed"
          f"{': seeds ' + str(failed[:20]) if failed else ''}); dataset {args.out} holds {total} episodes.")
    if outcomes:
        rate = f"{kept / elapsed:.2f} kept episodes/s, {len(outcomes) / elapsed:.2f} attempts/s"
        print(f"{elapsed:.1f} s, {rate}.")
    if stop.requested:
        print("Stopped early on request; re-run the same command to continue.")
        return 130
    if total < args.episodes:
        print(f"warning: only {total}/{args.episodes} episodes after {len(outcomes)} attempts.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
