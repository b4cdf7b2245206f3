"""What several benchmark commands share: task-name resolution after the core is pinned, and freeing GPU memory
between a table's rows."""

from __future__ import annotations

ALL = "all"  # --task all: every installed task (the registry's ALL_TASKS; spelled here so defaults cost no import)


def resolve_tasks(names: list[str]) -> list[str]:
    """`sage_gr00t.tasks.select_tasks`, imported only when called: the task registry pulls in numpy and mujoco,
    which must start their threads after the benchmark pinned its core."""
    from sage_gr00t.tasks import select_tasks

    return select_tasks(names)


def release_memory(cuda: bool, reset_peak: bool = False) -> None:
    """Drop the previous row's tensors so that the next row starts from an empty allocator (and, with
    `reset_peak`, from fresh peak-memory statistics)."""
    import gc

    gc.collect()
    if cuda:
        import torch

        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            if reset_peak:
                torch.cuda.reset_peak_memory_stats()
        except Exception:  # a broken CUDA context fails the rows after it; the table must still print
            pass
