"""The statistics that compare runs, shared by `dcgan ablate`'s report and `dcgan tune --confirm`.

A run's score wanders from one checkpoint to the next, so a run is scored by its tail: the mean of its last TAIL
scores in the second half of training (its training-time evaluations, or its kept checkpoints scored afterwards),
and the spread of those scores is reported beside it. Variants trained with the same seeds are compared paired by
seed (a t interval on the per-seed differences), which removes what the seed does to every variant alike.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from dcgan_cli.files import read_jsonl

CONFIDENCE = 0.95
TAIL = 3  # scores averaged per run: its last evaluations (or checkpoints) ...
TAIL_FROM = 0.5  # ... from this share of its steps on


@dataclass
class Effect:
    """A difference of mean scores, variant minus reference (negative: better), with its interval."""

    difference: float
    low: float
    high: float
    verdict: str  # "helps", "hurts", "within noise", or why there is none
    pairs: int = 0  # seeds compared pairwise (0: not paired)


def training_series(directory: Path, *, features: str, key: str) -> list[list[float]]:
    """[step, score] of each training-time evaluation in the run's metrics.jsonl made in `features` (the last
    record of a step wins: a resumed run logs again from its checkpoint)."""
    found = {}
    for record in read_jsonl(Path(directory) / "metrics.jsonl"):
        scored = record.get("eval")
        if isinstance(scored, dict) and scored.get("features") == features and key in scored:
            found[int(record["step"])] = float(scored[key])
    return [[step, value] for step, value in sorted(found.items())]


def tail(series: list[list[float]], *, steps: int) -> list[float]:
    """The scores a run is judged by: its last TAIL from step steps * TAIL_FROM on (at least its last one)."""
    late = [value for step, value in series if step >= steps * TAIL_FROM]
    return late[-TAIL:] or [value for _, value in series[-1:]]


def spread(series: list[list[float]], *, steps: int) -> float:
    """The standard deviation of the tail's scores: how much one checkpoint's score says about the run."""
    values = tail(series, steps=steps)
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def welch(a: np.ndarray, b: np.ndarray) -> Effect:
    """Welch's t interval for mean(a) - mean(b), for groups that share no seeds (lower scores are better)."""
    if len(a) < 2 or len(b) < 2:
        return Effect(float(a.mean() - b.mean()) if len(a) and len(b) else math.nan, math.nan, math.nan,
                      "needs 2+ seeds each")
    difference = float(a.mean() - b.mean())
    if a.std() == 0 and b.std() == 0:
        return _judged(difference, difference, difference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return _judged(difference, float(interval.low), float(interval.high))


def paired(a: dict[int, float], b: dict[int, float]) -> Effect:
    """The t interval of the mean per-seed difference a[seed] - b[seed] over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    differences = np.array([a[seed] - b[seed] for seed in seeds], dtype=np.float64)
    if len(differences) < 2:
        mean = float(differences.mean()) if len(differences) else math.nan
        return Effect(mean, math.nan, math.nan, "needs 2+ seeds each", pairs=len(differences))
    difference = float(differences.mean())
    if differences.std() == 0:
        return _judged(difference, difference, difference, pairs=len(differences))
    interval = stats.ttest_1samp(differences, 0.0).confidence_interval(CONFIDENCE)
    return _judged(difference, float(interval.low), float(interval.high), pairs=len(differences))


def _judged(difference: float, low: float, high: float, *, pairs: int = 0) -> Effect:
    verdict = "helps" if high < 0 else "hurts" if low > 0 else "within noise"
    return Effect(difference, low, high, verdict, pairs)
