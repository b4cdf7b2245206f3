"""Fan-out of independent work items: one stateful worker per process, on local processes or a Ray cluster.

    plan = FanOut(workers=4)                      # 4 spawned processes; FanOut() runs in this process
    plan = FanOut(ray="auto")                     # actors on the running Ray cluster (or ray="HOST:PORT")
    for index, result in fan_out(functools.partial(MyWorker, cfg), items, plan):
        ...                                       # results arrive as items finish, in any order

`make_worker` is a picklable zero-argument callable (a class, or `functools.partial` of one) that each process
calls once to build its worker: a callable `worker(item) -> result` that may keep expensive state between
items (a simulator, a loaded policy). Items go out one at a time to whichever worker is free, so a finished
result is in the caller's hands at once (an interrupted run keeps it) and a slow item holds up no other.

Evaluation (`sage-eval --workers / --ray`) and dream generation share this module; nothing here imports
numpy, torch or Ray at module level (a worker sets its thread count before those libraries load).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

WorkerFactory = Callable[[], Callable[[Any], Any]]
_DONE = None  # the inbox sentinel: no more items for this process
_PROBE_TIMEOUT_S = 3.0


class WorkerError(RuntimeError):
    """A worker raised while processing an item; carries the worker's traceback text."""


@dataclass(frozen=True)
class FanOut:
    """Where the items run: `workers` local processes (1: in this process), or Ray actors when `ray` is set."""

    workers: int = 1
    ray: str | None = None  # "auto" (the running cluster) | HOST:PORT | ray://HOST:PORT
    threads_per_worker: int = 1  # OMP / MKL threads in each spawned process or actor

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}.")
        if self.ray is not None:
            check_ray_address(self.ray)


def check_ray_address(address: str) -> None:
    """Fail in seconds, with one line, when a Ray address is malformed or nothing listens there.

    `ray.init` on an unreachable address retries for about a minute before it gives up; a TCP probe does not."""
    if address == "auto":
        return  # ray.init(address="auto") answers at once when no cluster runs
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ValueError(f"--ray {address!r}: expected 'auto', HOST:PORT (the head's GCS port, e.g. 10.0.0.5:6379) "
                         "or ray://HOST:PORT.")
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConnectionError(f"--ray {address}: no Ray cluster reachable at {host}:{port} ({exc.strerror or exc}); "
                              "start one with `ray start --head` or give its address.") from None


def fan_out(make_worker: WorkerFactory, items: Sequence[Any], plan: FanOut) -> Iterator[tuple[int, Any]]:
    """Yield `(index, make_worker()(items[index]))` for every item, in the order items finish."""
    if not items:
        return iter(())
    if plan.ray is not None:
        return _on_ray(make_worker, items, plan)
    if plan.workers == 1:
        return _in_process(make_worker, items)
    return _on_processes(make_worker, items, plan)


def _in_process(make_worker: WorkerFactory, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    worker = make_worker()
    try:
        for index, item in enumerate(items):
            yield index, worker(item)
    finally:
        _close(worker)


def _close(worker: Any) -> None:
    close = getattr(worker, "close", None)
    if callable(close):
        close()


def _limit_threads(threads: int) -> None:
    """`threads` per pool (OpenMP / BLAS, and llvmpipe's software rendering) in each process: N workers on N
    cores, not N x cores threads contending for them."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LP_NUM_THREADS"):
        os.environ[name] = str(threads)


def _serve(factory: bytes, threads: int, inbox: Any, outbox: Any) -> None:
    """A spawned process: build the worker (after limiting threads: unpickling imports the worker's module),
    then answer items until the sentinel. An item's exception goes back to the parent and ends this process."""
    _limit_threads(threads)
    worker = None
    try:
        worker = pickle.loads(factory)()
        while (job := inbox.get()) is not _DONE:
            index, item = job
            outbox.put(("ok", index, worker(item)))
    except BaseException as exc:  # reported to the parent, which re-raises it
        outbox.put(("error", -1, _portable(exc)))
    finally:
        if worker is not None:
            _close(worker)


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (the parent re-raises it as it was: a CheckpointError stays one), else a
    WorkerError with the traceback text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # any unpicklable exception
        return WorkerError("".join(traceback.format_exception(exc)))


def _on_processes(make_worker: WorkerFactory, items: Sequence[Any], plan: FanOut) -> Iterator[tuple[int, Any]]:
    import multiprocessing as mp

    context = mp.get_context("spawn")  # fork would copy this process's threads and simulator handles
    inbox, outbox = context.Queue(), context.Queue()
    count = min(plan.workers, len(items))
    factory = pickle.dumps(make_worker)
    for job in enumerate(items):
        inbox.put(job)
    for _ in range(count):
        inbox.put(_DONE)
    processes = [context.Process(target=_serve, args=(factory, plan.threads_per_worker, inbox, outbox), daemon=True)
                 for _ in range(count)]
    for process in processes:
        process.start()
    try:
        remaining = len(items)
        while remaining:
            try:
                status, index, payload = outbox.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    raise WorkerError("every worker process ended before all items were done "
                                      f"(exit codes {[p.exitcode for p in processes]})") from None
                continue
            if status == "error":
                raise payload
            remaining -= 1
            yield index, payload
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)


class _Actor:
    """The Ray actor: one worker per actor process, built as in `_serve`."""

    def __init__(self, factory: bytes, threads: int) -> None:
        _limit_threads(threads)
        self.worker = pickle.loads(factory)()

    def run(self, item: Any) -> Any:
        return self.worker(item)

    def close(self) -> None:
        _close(self.worker)


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[None]:
    """Connected to the Ray cluster at `address` inside the block (one line of ConnectionError at once when there
    is none); disconnected after it unless this process was connected before (nested blocks, a caller's
    `ray.init`)."""
    import ray

    if ray.is_initialized():
        yield
        return
    check_ray_address(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        if address == "auto":  # Ray's own text names its `--address` flag, not ours
            raise ConnectionError("--ray auto: no running Ray cluster found from this machine; start one with "
                                  "`ray start --head`, or give --ray HOST:PORT.") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"--ray {address}: {first}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _on_ray(make_worker: WorkerFactory, items: Sequence[Any], plan: FanOut) -> Iterator[tuple[int, Any]]:
    import ray

    assert plan.ray is not None
    with ray_session(plan.ray):
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = min(len(items), plan.workers if plan.workers > 1 else max(1, cpus))
        actor_cls = ray.remote(num_cpus=1)(_Actor)
        factory = pickle.dumps(make_worker)
        actors = [actor_cls.remote(factory, plan.threads_per_worker) for _ in range(count)]
        pending = iter(enumerate(items))
        running: dict[Any, tuple[Any, int]] = {}

        def submit(actor: Any) -> None:
            job = next(pending, None)
            if job is not None:
                running[actor.run.remote(job[1])] = (actor, job[0])

        for actor in actors:
            submit(actor)
        try:
            while running:
                (ready,), _ = ray.wait(list(running), num_returns=1)
                actor, index = running.pop(ready)
                try:
                    result = ray.get(ready)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    raise (exc.cause if isinstance(exc.cause, BaseException) else cause) from None
                submit(actor)
                yield index, result
        finally:
            for actor in actors:  # also ends an item still running (an interrupted or failed run)
                ray.kill(actor)
