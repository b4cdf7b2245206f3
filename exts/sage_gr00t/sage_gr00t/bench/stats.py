"""Statistics of success rates: Wilson intervals, and paired comparisons of two controllers run on the same
episodes (discordant pairs and the exact McNemar test)."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

Result = Mapping[str, Any]


def discordant_pairs(first: Iterable[Result], second: Iterable[Result], key: Callable[[Result], Hashable],
                     outcome: str = "success") -> tuple[int, int]:
    """(episodes only `first` solved, episodes only `second` solved), pairing results by `key` (e.g. seed,
    fault and phase). Every result of `first` needs its partner in `second`."""
    partner = {key(r): bool(r[outcome]) for r in second}
    only_first = only_second = 0
    for r in first:
        mine, theirs = bool(r[outcome]), partner[key(r)]
        only_first += mine and not theirs
        only_second += theirs and not mine
    return only_first, only_second


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: a sign (binomial, p = 1/2) test over the discordant pairs; 1.0 without any.

    Concordant pairs carry no information about which controller is better, so only these counts enter."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_first, n).pvalue)


def paired_mcnemar(first: Iterable[Result], second: Iterable[Result], key: Callable[[Result], Hashable],
                   outcome: str = "success") -> tuple[int, int, float]:
    """(only first solved, only second solved, exact McNemar p-value) of two paired result lists."""
    only_first, only_second = discordant_pairs(first, second, key, outcome)
    return only_first, only_second, mcnemar_exact(only_first, only_second)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The closed ends exactly: in floating point centre + half can land a rounding error short of 1 at k = n.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (None when none are: a metric this run did not measure)."""
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def episode_metrics(records: Iterable[Result]) -> dict[str, Any]:
    """Success with its 95% Wilson interval and the mean episode metrics of evaluation records (dicts with
    success, steps, wall_s and, where measured, completion_s, arm_jerk, energy_j, safety_interventions)."""
    records = list(records)
    n = len(records)
    wins = sum(bool(r["success"]) for r in records)
    low, high = wilson_interval(wins, n)
    steps = sum(int(r["steps"]) for r in records)
    wall = sum(float(r.get("wall_s", 0.0)) for r in records)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "success_ci95": [low, high],
        "mean_steps": _mean(r["steps"] for r in records),
        "mean_completion_s": _mean(r.get("completion_s") for r in records),  # successful episodes only
        "mean_arm_jerk": _mean(r.get("arm_jerk") for r in records),
        "mean_energy_j": _mean(r.get("energy_j") for r in records),
        "mean_safety_interventions": _mean(r.get("safety_interventions") for r in records),
        "mean_camera_trust": _mean(r.get("camera_trust") for r in records),  # SAGE runs only
        "mean_trust_settle_s": _mean(r.get("trust_settle_s") for r in records),
        "env_steps_per_s": steps / wall if wall > 0 else None,
    }
