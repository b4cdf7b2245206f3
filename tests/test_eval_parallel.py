"""sage_gr00t.parallel.fan_out: every item once, a worker built once per process, a worker's exception raised in
the caller as itself."""

from __future__ import annotations

import os

import pytest

from sage_gr00t.parallel import FanOut, check_ray_address, fan_out


class Tagged:
    """Squares its item and says which process (and which build of the worker) answered."""

    def __init__(self) -> None:
        self.built_in = os.getpid()
        self.calls = 0

    def __call__(self, item: int) -> tuple[int, int, int]:
        if item < 0:
            raise ValueError(f"negative item {item}")
        self.calls += 1
        return item * item, self.built_in, self.calls


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_once_with_one_worker_per_process(workers: int) -> None:
    items = list(range(8))
    results = dict(fan_out(Tagged, items, FanOut(workers=workers)))
    assert sorted(results) == items and all(results[i][0] == i * i for i in items)
    pids = {pid for _, pid, _ in results.values()}
    assert len(pids) <= workers and ((os.getpid() in pids) == (workers == 1))
    # One worker per process: its call counter runs 1..n over all the items that process answered.
    for pid in pids:
        calls = sorted(c for _, p, c in results.values() if p == pid)
        assert calls == list(range(1, len(calls) + 1))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_exception_reaches_the_caller_as_itself(workers: int) -> None:
    with pytest.raises(ValueError, match="negative item -1"):
        list(fan_out(Tagged, [1, 2, -1, 3], FanOut(workers=workers)))


def test_ray_addresses_are_checked_before_connecting() -> None:
    check_ray_address("auto")  # resolved by Ray itself
    with pytest.raises(ValueError, match="expected 'auto', HOST:PORT"):
        FanOut(ray="localhost")
    with pytest.raises(ConnectionError, match=r"no Ray cluster reachable at 127\.0\.0\.1:1"):
        FanOut(ray="ray://127.0.0.1:1")
