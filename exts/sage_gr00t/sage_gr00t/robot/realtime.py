"""Opt-in real-time scheduling for the threads that keep the robot's timing (the command loop, the stand-in's
physics loop, the rt/lowstate listener).

`SCHED_FIFO` lets such a thread run as soon as its sleep ends instead of waiting behind whatever else the CPU is
busy with (on a loaded machine a 20 ms loop otherwise sees 100 ms gaps). It needs CAP_SYS_NICE (root, or an
`rtprio` limit); without it the thread keeps normal scheduling and one line is logged. Threads that are promoted
sleep between ticks, so they cannot starve the machine (and Linux keeps 5% of each second for others anyway).
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

MAX_PRIORITY = 98  # below the kernel's own per-CPU threads (99)


def check_priority(priority: int) -> None:
    if not (isinstance(priority, int) and 0 <= priority <= MAX_PRIORITY):
        raise ValueError(f"realtime_priority must be 0 (off) or a SCHED_FIFO priority 1..{MAX_PRIORITY}, "
                         f"got {priority!r}.")


def promote_current_thread(priority: int, what: str) -> bool:
    """Put the calling thread under SCHED_FIFO at `priority` (0: leave it alone). False if not permitted."""
    if priority <= 0:
        return False
    if not hasattr(os, "sched_setscheduler"):
        logger.info("%s: no SCHED_FIFO on this platform; normal scheduling", what)
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0 = the calling thread on Linux
    except (PermissionError, OSError) as exc:
        logger.info("%s: SCHED_FIFO %d not permitted (%s); normal scheduling", what, priority, exc.strerror or exc)
        return False
    logger.info("%s: SCHED_FIFO priority %d", what, priority)
    return True


class ThreadPromoter:
    """Promotes each thread that calls `__call__` once (DDS listener threads are the library's, not ours)."""

    def __init__(self, priority: int, what: str) -> None:
        self.priority, self.what = priority, what
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.priority <= 0:
            return
        ident = threading.get_ident()
        if ident in self._seen:
            return
        with self._lock:
            if ident in self._seen:
                return
            self._seen.add(ident)
        if not promote_current_thread(self.priority, self.what):
            self.priority = 0  # not permitted: said once, not again per thread
