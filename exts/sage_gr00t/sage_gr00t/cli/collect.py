"""Collect scripted-expert demonstrations into a GR00T LeRobot dataset.

    sage-collect --task pick_apple --episodes 50 --out outputs/datasets/pick_apple_sage --randomization train

Seeds `--seed-start, +1, ...` are tried in order; only successful episodes are kept, each written the moment it
ends. `--episodes` is the number of episodes the dataset should hold in total.

Interrupting (Ctrl-C or SIGTERM) stops after the current control step, drops the unfinished episode and
finalizes the dataset: every finished episode stays loadable. A second Ctrl-C aborts at once (the dataset is
still finalized on the way out). Re-running with the same `--out` resumes: it checks that task, embodiment,
randomization, image size and the expert's settings match, then continues from the first untried
seed (ignoring `--seed-start`) until the dataset holds `--episodes` episodes. After a hard kill (SIGKILL), the next
run rolls back to the last checkpoint (every `--checkpoint-every` episodes).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal

import tyro
from tqdm import tqdm

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.data.collect import CollectionState, EpisodeOutcome, collect_episodes
from sage_gr00t.data.lerobot_dataset import DatasetLayout, GrootDatasetWriter
from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import get_task, make_env

PROG = "sage-collect"
_EXPERT_DEFAULTS = asdict(ExpertConfig())


@dataclass
class CollectConfig:
    """Which demonstrations to collect, where to, and how they are stored."""

    out: Path  # dataset folder (created, or resumed)
    task: str = "pick_apple"  # a task name (sage_gr00t.tasks.task_names())
    embodiment: str = TaskConfig.embodiment  # robot: sage_humanoid or unitree_g1 (needs MENAGERIE_ROOT)
    variant: Literal["train", "novel"] = "train"  # task variant: the training scenes, or unseen objects
    episodes: int = 50  # successful episodes the dataset should hold
    seed_start: int = 0  # first seed of a new dataset
    randomization: Literal["none", "train", "strong"] = "none"  # profile of config/domain_randomization.yaml
    image_size: int = TaskConfig.image_height  # square ego_view size in pixels
    max_attempts: int | None = None  # stop after this many attempts in this run (None: 3 x episodes still needed)
    tail_steps: int = 5  # steps recorded after the expert's plan ends
    checkpoint_every: int = 10  # finalize+snapshot every N episodes (bounds the loss after a hard kill; 0: never)
    storage: Literal["video", "image"] = "video"  # ego_view as mp4 (GR00T's format) or as PNGs inside the parquet
    vcodec: str = "h264"  # video codec (h264 decodes everywhere; libsvtav1 = AV1)
    crf: int = 18  # video quality (lower is better, bigger)
    # The scripted expert; --plan-order shuffled for policies trained on per-subtask language.
    expert: Annotated[ExpertConfig, tyro.conf.arg(name="")] = field(default_factory=ExpertConfig)

    def __post_init__(self) -> None:
        get_task(self.task)  # UnknownTaskError (a ValueError) lists the installed tasks
        check(self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}.")
        check(self.seed_start >= 0, f"--seed-start must be >= 0, got {self.seed_start}.")
        check(self.image_size >= 16, f"--image-size must be >= 16 pixels, got {self.image_size}.")
        check(self.max_attempts is None or self.max_attempts >= 0,
              f"--max-attempts must be >= 0, got {self.max_attempts}.")
        check(self.tail_steps >= 0, f"--tail-steps must be >= 0, got {self.tail_steps}.")
        check(self.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}.")
        check(self.crf >= 0, f"--crf must be >= 0, got {self.crf}.")

    def settings(self) -> dict[str, Any]:
        """What a resumed dataset must share. The expert's settings other than its plan order are only
        recorded when changed, so a default run writes the same collection state as before they were flags."""
        expert = asdict(self.expert)
        return {
            "task": self.task, "embodiment": self.embodiment, "variant": self.variant,
            "randomization": self.randomization, "image_size": self.image_size, "tail_steps": self.tail_steps,
            "plan_order": expert.pop("plan_order"),
            **{f"expert_{k}": v for k, v in expert.items() if v != _EXPERT_DEFAULTS[k]},
        }


def _with_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as compared on resume: keys a state may lack (older datasets, default expert) at their default."""
    return {"plan_order": _EXPERT_DEFAULTS["plan_order"],
            **{f"expert_{k}": v for k, v in _EXPERT_DEFAULTS.items() if k != "plan_order"}, **settings}


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
    cfg = parse(CollectConfig, argv, prog=PROG, description=__doc__)
    logging.basicConfig(level=logging.WARNING)
    settings = cfg.settings()
    state = CollectionState.load(cfg.out)
    if state is not None:
        stored, requested = _with_defaults(state.settings), _with_defaults(settings)
        mismatch = {k: (stored.get(k), v) for k, v in requested.items() if stored.get(k) != v}
        if mismatch:
            print(f"error: {cfg.out} was collected with other settings (stored, requested): {mismatch}",
                  file=sys.stderr)
            return 2
    else:
        state = CollectionState(settings=settings, next_seed=cfg.seed_start)

    randomization = DomainRandomizationConfig.from_yaml(profile=cfg.randomization)
    env = make_env(cfg.task, embodiment=cfg.embodiment, variant=cfg.variant, randomization=randomization,
                   image_height=cfg.image_size, image_width=cfg.image_size)
    expert = ScriptedExpert(env, cfg.expert)
    layout = DatasetLayout.from_env(env)

    stop = _StopFlag()
    previous = {s: signal.signal(s, stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    outcomes: list[EpisodeOutcome] = []
    try:
        with GrootDatasetWriter(cfg.out, layout, use_videos=cfg.storage == "video", vcodec=cfg.vcodec,
                                crf=cfg.crf, checkpoint_every=cfg.checkpoint_every) as writer:
            # A kill between saving an episode and saving the state must not reuse that episode's seed.
            recorded = [r.seed for r in writer.records if r.seed is not None]
            state.next_seed = max([state.next_seed, *(s + 1 for s in recorded)])
            have = writer.num_episodes
            if writer.lost_records:
                lost = [r.seed for r in writer.lost_records]
                print(f"{cfg.out} was not closed by its last run: restored its last checkpoint ({have} episodes); "
                      f"{len(lost)} episodes saved after it were lost (seeds {lost}) and are collected again.")
            if have:
                print(f"Resuming {cfg.out}: {have} episodes, next seed {state.next_seed}.")
            needed = max(0, cfg.episodes - have)
            max_attempts = cfg.max_attempts if cfg.max_attempts is not None else 3 * needed
            bar = tqdm(total=cfg.episodes, initial=have, unit="ep", desc=f"{cfg.task}/{cfg.embodiment}")

            def on_outcome(o: EpisodeOutcome) -> None:
                outcomes.append(o)
                if o.success:
                    bar.update(1)
                fails = sum(not x.success for x in outcomes)
                bar.set_postfix(seed=o.seed, failed=fails, steps=o.steps)

            try:
                collect_episodes(
                    env, expert, writer, target_episodes=cfg.episodes, state=state,
                    max_attempts=max_attempts, tail_steps=cfg.tail_steps, should_stop=stop,
                    on_outcome=on_outcome,
                    episode_extra={"task_name": cfg.task, "embodiment": cfg.embodiment,
                                   "variant": cfg.variant, "randomization": cfg.randomization},
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
          f"{': seeds ' + str(failed[:20]) if failed else ''}); dataset {cfg.out} holds {total} episodes.")
    if outcomes:
        rate = f"{kept / elapsed:.2f} kept episodes/s, {len(outcomes) / elapsed:.2f} attempts/s"
        print(f"{elapsed:.1f} s, {rate}.")
    if stop.requested:
        print("Stopped early on request; re-run the same command to continue.")
        return 130
    if total < cfg.episodes:
        print(f"warning: only {total}/{cfg.episodes} episodes after {len(outcomes)} attempts.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
