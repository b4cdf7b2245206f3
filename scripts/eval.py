#!/usr/bin/env python
"""Thin shim for `isaaclab -p scripts/eval.py ...` (the design card's headless form); the command is `sage-eval`.

    isaaclab -p scripts/eval.py --backend isaaclab --policy expert --task sort_blocks
    python scripts/eval.py --help
"""

from sage_gr00t.cli.eval import main

if __name__ == "__main__":
    raise SystemExit(main())
