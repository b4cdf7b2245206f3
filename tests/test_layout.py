"""The shape of the code: one place per concept, and a core that never imports the task package."""

from __future__ import annotations

import ast
from pathlib import Path

import sage_gr00t

CORE = Path(sage_gr00t.__file__).resolve().parent
LIBRARY = [CORE, CORE.parents[2] / "tasks" / "sage_gr00t_tasks"]


def _sources(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_no_core_module_imports_the_task_package() -> None:
    offenders = []
    for path in _sources(CORE):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # inside functions too
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "sage_gr00t_tasks" for n in names):
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno}")
    assert not offenders, f"the core imports the task package at {offenders}; find tasks through sage_gr00t.tasks"


def test_modality_keys_are_spelled_once() -> None:
    hits = [f"{p}:{i}" for p in _sources(*LIBRARY) for i, line in enumerate(p.read_text().splitlines(), 1)
            if '"video.ego_view"' in line]
    assert len(hits) == 1 and hits[0].startswith(str(CORE / "modality.py")), hits


def test_every_task_is_one_module_found_through_the_entry_points() -> None:
    from sage_gr00t.tasks import get_task, task_names

    for name in ("pick_apple", "sort_blocks", "pour_water"):
        task = get_task(name)
        assert name in task_names() and task.__module__ == f"sage_gr00t_tasks.{name}"
