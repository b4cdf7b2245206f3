#!/usr/bin/env python
"""Export a collected dataset to the GR00T LeRobot (v2.0) layout that Isaac-GR00T N1.5 finetunes on.

    python scripts/export_groot_v2.py --src outputs/datasets/pick_apple_sage \
        --dst outputs/datasets/pick_apple_sage_groot_v2

The source is what `collect_demos.py` writes (LeRobot v3.0 + meta/modality.json); the result has one
parquet and one h264 mp4 per episode, meta/{info.json, episodes.jsonl, tasks.jsonl, modality.json,
stats.json}. The export is checked (files, schema, video frame counts and timestamps) before exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sage_gr00t.data.groot_v2 import DEFAULT_CHUNKS_SIZE, export_groot_v2, validate_groot_v2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="dataset written by collect_demos.py")
    p.add_argument("--dst", type=Path, required=True, help="output folder (must not exist, see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace --dst if it exists")
    p.add_argument("--crf", type=int, default=18, help="h264 quality of the re-encoded videos (lower = better)")
    p.add_argument("--gop", type=int, default=2, help="keyframe interval (small = fast random access)")
    p.add_argument("--chunks-size", type=int, default=DEFAULT_CHUNKS_SIZE, help="episodes per chunk folder")
    p.add_argument("--no-check", action="store_true", help="skip validating the result")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.src / "meta" / "info.json").is_file():
        print(f"error: no dataset at {args.src}", file=sys.stderr)
        return 2
    if args.dst.exists() and not args.overwrite:
        print(f"error: {args.dst} exists (use --overwrite)", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        print(f"\rexported {done}/{total} episodes", end="", file=sys.stderr, flush=True)

    summary = export_groot_v2(args.src, args.dst, chunks_size=args.chunks_size, crf=args.crf, gop=args.gop,
                              overwrite=args.overwrite, progress=progress)
    print(file=sys.stderr)
    print(f"{summary.dst}: {summary.episodes} episodes, {summary.frames} frames, {summary.tasks} tasks "
          f"in {summary.seconds:.1f} s")
    if not args.no_check:
        problems = validate_groot_v2(args.dst)
        for problem in problems:
            print(f"check failed: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("check passed: every file and field upstream's LeRobotSingleDataset reads is present and consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
