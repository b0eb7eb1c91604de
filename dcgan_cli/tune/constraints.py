"""Bounds on a trial's other scores, `dcgan tune --constraint "recall >= 0.45"`: a trial whose seeds' mean final
score breaks one is infeasible. Optuna is told (its TPE sampler steers away, its best trial is a feasible one) and
the report lists the trial as infeasible with its value, so a search cannot buy its objective with variety."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dcgan_cli.evaluate.features import EVAL_LOGGED

SCORES = tuple(name for name in EVAL_LOGGED if name not in ("classes", "bins", "ndb_k"))  # counts, not scores
_FORM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class ConstraintError(ValueError):
    """A --constraint that cannot be read; the message names the value."""


@dataclass(frozen=True)
class Constraint:
    """score >= bound or score <= bound, on the mean over a trial's seeds of each run's final score."""

    score: str
    op: str
    bound: float

    def text(self) -> str:
        return f"{self.score} {self.op} {self.bound:g}"

    def violation(self, value: float) -> float:
        """How far `value` breaks the bound (Optuna's convention: 0 or less is feasible)."""
        return self.bound - value if self.op == ">=" else value - self.bound


def parse(text: str) -> Constraint:
    """`recall >= 0.45` -> Constraint; ConstraintError naming the text and the scores a bound may name."""
    found = _FORM.match(text)
    if not found:
        raise ConstraintError(f"--constraint: write SCORE >= NUMBER or SCORE <= NUMBER, e.g. \"recall >= 0.45\". "
                              f"Received: {text!r}")
    score, op, bound = found.groups()
    if score not in SCORES:
        raise ConstraintError(f"--constraint: {score!r} is not a score a run logs; one of {', '.join(SCORES)}. "
                              f"Received: {text!r}")
    return Constraint(score, op, float(bound))


def check(constraints: tuple[Constraint, ...], runs: list[dict]) -> list[dict]:
    """Each constraint on the seeds' final `scores`: {constraint, value (their mean), violation, met}; KeyError
    naming the score where the runs' scores lack it (it depends on the features)."""
    checked = []
    for constraint in constraints:
        if any(constraint.score not in scores for scores in runs):
            raise KeyError(constraint.score)
        value = float(np.mean([scores[constraint.score] for scores in runs]))
        violation = constraint.violation(value)
        checked.append({"constraint": constraint.text(), "value": value, "violation": violation,
                        "met": violation <= 0})
    return checked
