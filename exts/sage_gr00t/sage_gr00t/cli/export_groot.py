"""Export a collected dataset to the GR00T LeRobot (v2.0) layout that Isaac-GR00T N1.5 finetunes on.

    sage-export-groot --src outputs/datasets/pick_apple_sage --dst outputs/datasets/pick_apple_sage_groot_v2

The source is what `sage-collect` writes (LeRobot v3.0 + meta/modality.json); the result has one parquet and
one h264 mp4 per episode, meta/{info.json, episodes.jsonl, tasks.jsonl, modality.json, stats.json}. The export
is checked (files, schema, video frame counts and timestamps) before exit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.data.groot_v2 import DEFAULT_CHUNKS_SIZE, export_groot_v2, validate_groot_v2

PROG = "sage-export-groot"


@dataclass
class ExportConfig:
    """What to export, where to, and how the videos are re-encoded."""

    src: Path  # dataset written by sage-collect
    dst: Path  # output folder (must not exist, see --overwrite)
    overwrite: bool = False  # replace --dst if it exists
    crf: int = 18  # h264 quality of the re-encoded videos (0..51, lower = better and bigger)
    gop: int = 2  # keyframe interval in frames (small = fast random access for training loaders)
    chunks_size: int = DEFAULT_CHUNKS_SIZE  # episodes per chunk folder
    check: bool = True  # validate the result (--no-check skips it)

    def __post_init__(self) -> None:
        check(0 <= self.crf <= 51, f"--crf must be in 0..51 (h264), got {self.crf}.")
        check(self.gop >= 1, f"--gop must be >= 1, got {self.gop}.")
        check(self.chunks_size >= 1, f"--chunks-size must be >= 1, got {self.chunks_size}.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(ExportConfig, argv, prog=PROG, description=__doc__)
    if not (cfg.src / "meta" / "info.json").is_file():
        print(f"error: no dataset at {cfg.src}", file=sys.stderr)
        return 2
    if cfg.dst.exists() and not cfg.overwrite:
        print(f"error: {cfg.dst} exists (use --overwrite)", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        print(f"\rexported {done}/{total} episodes", end="", file=sys.stderr, flush=True)

    summary = export_groot_v2(cfg.src, cfg.dst, chunks_size=cfg.chunks_size, crf=cfg.crf, gop=cfg.gop,
                              overwrite=cfg.overwrite, progress=progress)
    print(file=sys.stderr)
    print(f"{summary.dst}: {summary.episodes} episodes, {summary.frames} frames, {summary.tasks} tasks "
          f"in {summary.seconds:.1f} s")
    if cfg.check:
        problems = validate_groot_v2(cfg.dst)
        for problem in problems:
            print(f"check failed: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("check passed: every file and field upstream's LeRobotSingleDataset reads is present and consistent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
