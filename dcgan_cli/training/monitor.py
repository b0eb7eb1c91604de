"""The training monitor: named health rules over the metric stream, the events they raise, and what a run does then.

Every rule reads the records the loop appends to metrics.jsonl (a log line's means, an eval's scores, a probe's
diversity and gradient norms: see probes.py), so a resumed or rolled-back run rebuilds the monitor's state by
replaying its metrics quietly. A rule trips once per episode: it re-arms when its condition has cleared. Thresholds
live in the config's `monitor` section; docs/monitor.md gives the measurements they were calibrated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

from dcgan_cli.config import MonitorConfig
from dcgan_cli.files import read_jsonl

EVENTS = "events.jsonl"
# What each log line of the training loop holds, as means over the steps since the previous one: D's losses, mean
# beliefs and ADA's r_t on real and fake images, G's loss, the augmentation strength and G's gradient norm.
METRICS = ("d_loss_real", "d_loss_fake", "g_loss", "d_real_mean", "d_fake_mean", "d_real_sign", "augment_p",
           "g_grad_norm")
RULES = ("d_wins", "g_rising", "collapse", "non_finite", "grad_norm", "d_overfits")


@dataclass(frozen=True)
class Trip:
    """A rule that tripped: at `step`, its condition holding since step `since`; `message` says it in words."""

    rule: str
    step: int
    since: int
    message: str
    values: dict = field(default_factory=dict)

    def event(self, action: str) -> dict:
        """The events.jsonl entry of this trip and the action taken."""
        return {"event": "trip", "rule": self.rule, "step": self.step, "since": self.since, "action": action,
                "message": self.message, "values": self.values}


class _Episode:
    """Consecutive observations of one condition: its streak, when it began, and whether it already tripped. A
    tripped rule re-arms once the condition has been clear as many times in a row as it needed to trip, so a value
    hovering at a bound does not trip again and again."""

    def __init__(self) -> None:
        self.count, self.clear, self.since, self.tripped = 0, 0, 0, False

    def see(self, holds: bool, step: int, *, needed: int) -> bool:
        """Record one observation; True when the condition has just held `needed` times in a row."""
        if not holds:
            self.count, self.clear = 0, self.clear + 1
            self.tripped = self.tripped and self.clear < needed
            return False
        self.since = step if self.count == 0 else self.since
        self.count, self.clear = self.count + 1, 0
        if self.count >= needed and not self.tripped:
            self.tripped = True
            return True
        return False


class Monitor:
    """The rules of a `monitor` config section over one run's records, in step order; `fake_floor` is the lowest
    D(G(z)) the run's labels let D reach (hacks.fake_label_mean)."""

    def __init__(self, cfg: MonitorConfig, *, fake_floor: float = 0.0):
        self.cfg, self.fake_floor = cfg, fake_floor
        self.d_wins, self.g_rising, self.collapse, self.modes = _Episode(), _Episode(), _Episode(), _Episode()
        self.grads, self.overfits = _Episode(), _Episode()
        self.g_history: list[tuple[int, float]] = []
        self.best_modes: int | None = None

    def observe(self, record: dict) -> list[Trip]:
        """The trips of one metrics.jsonl record: a log line's means, "eval" scores, "probe" measurements."""
        step, trips = record["step"], []
        if "g_loss" in record:
            trips += self._d_wins(step, record) + self._g_rising(step, record["g_loss"])
        if "probe" in record:
            trips += self._diversity(step, record["probe"]) + self._grad_norm(step, record["probe"])
            if "d_holdout_gap" in record["probe"]:
                trips += self._d_overfits(step, record["probe"]["d_holdout_gap"])
        if "eval" in record and ("modes_covered" in record["eval"] or "bins_covered" in record["eval"]):
            trips += self._modes(step, record["eval"])
        return trips

    def replay(self, records: list[dict]) -> None:
        """Rebuild the state from a run's earlier records (their events were recorded when they happened)."""
        for record in records:
            self.observe(record)

    def non_finite(self, step: int, since: int, values: dict[str, float]) -> Trip:
        """A NaN or infinite loss or weight: always a trip."""
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        return Trip("non_finite", step, since, f"non-finite values ({shown})", {k: str(v) for k, v in values.items()})

    def _d_wins(self, step: int, record: dict) -> list[Trip]:
        """What D does, whatever the label hacks make its loss: D(G(z)) down at the floor its labels allow (D sure
        of every fake), or G's gradient norm near 0 (G no longer learns; a record logged before G's norm was has
        none)."""
        c = self.cfg
        fake, grad, bound = record["d_fake_mean"], record.get("g_grad_norm"), self.fake_floor + c.d_wins_margin
        sure, starved = fake < bound, grad is not None and grad < c.d_wins_grad_norm
        if not (c.d_wins and self.d_wins.see(sure or starved, step, needed=c.d_wins_logs)):
            return []
        found = ([f"D(G(z)) {fake:.3g} < {bound:.3g} (its labels' floor {self.fake_floor:.3g} + "
                  f"{c.d_wins_margin:g}): D is sure of every fake"] if sure else []) + (
            [f"G's gradient norm {grad:.3g} < {c.d_wins_grad_norm:g}: G has stopped learning"] if starved else [])
        return [Trip("d_wins", step, self.d_wins.since,
                     f"D wins: {' and '.join(found)}, for {c.d_wins_logs} logs in a row since step "
                     f"{self.d_wins.since}", {"d_fake_mean": fake, "g_grad_norm": grad})]

    def _d_overfits(self, step: int, gap: float) -> list[Trip]:
        """D's mean output on its training images minus that on real images it never saw (data.holdout): near 0
        while D judges the distribution, large once it has learnt the training images themselves."""
        c = self.cfg
        holds = gap > c.d_overfits_gap and step > c.d_overfits_after
        return tripped(c.d_overfits and self.overfits.see(holds, step, needed=c.d_overfits_checks), lambda: Trip(
            "d_overfits", step, self.overfits.since,
            f"D overfits its training images: its mean output on them is {gap:.3f} above that on held-out real "
            f"images (> {c.d_overfits_gap:g}) at {c.d_overfits_checks} checks in a row since step "
            f"{self.overfits.since}; try hacks.adaptive_augment", {"d_holdout_gap": gap}))

    def _g_rising(self, step: int, g_loss: float) -> list[Trip]:
        c = self.cfg
        self.g_history = (self.g_history + [(step, g_loss)])[-c.g_rising_logs:]
        rise, tau = rising(self.g_history) if len(self.g_history) == c.g_rising_logs else (0.0, 0.0)
        holds = rise >= c.g_rising_min and tau >= c.g_rising_tau
        first = self.g_history[0][0]
        return tripped(c.g_rising and self.g_rising.see(holds, step, needed=1), lambda: Trip(
            "g_rising", step, first,
            f"G's loss rising steadily: up {rise:.2f} (>= {c.g_rising_min:g}) over the {c.g_rising_logs} logs "
            f"since step {first}, Kendall's tau {tau:.2f} (>= {c.g_rising_tau:g})",
            {"rise": rise, "tau": tau, "g_loss": g_loss}))

    def _diversity(self, step: int, probe: dict) -> list[Trip]:
        c = self.cfg
        holds = probe["diversity"] < c.collapse_diversity and step > c.collapse_after
        return tripped(c.collapse and self.collapse.see(holds, step, needed=c.collapse_checks), lambda: Trip(
            "collapse", step, self.collapse.since,
            f"mode collapse: the fixed-latent samples' mean pairwise distance is {probe['diversity']:.2f} of the "
            f"real images' (< {c.collapse_diversity:g}) at {c.collapse_checks} checks in a row since step "
            f"{self.collapse.since}", {"diversity": probe["diversity"]}))

    def _modes(self, step: int, scores: dict) -> list[Trip]:
        """The modes covered: the domain classifier's classes, or without classes NDB's bins covered."""
        c = self.cfg
        if "modes_covered" in scores:
            modes, total, what = scores["modes_covered"], scores["classes"], "modes"
        else:
            modes, total, what = scores["bins_covered"], scores["bins"], "NDB bins"
        best = modes if self.best_modes is None else max(self.best_modes, modes)
        holds = best - modes >= c.collapse_mode_drop
        self.best_modes = best
        return tripped(c.collapse and self.modes.see(holds, step, needed=1), lambda: Trip(
            "collapse", step, step,
            f"mode collapse: {modes} of {total} {what} covered, {best - modes} fewer than the run's best ({best}; "
            f"a drop of {c.collapse_mode_drop} trips)", {"modes_covered": modes, "best_modes": best, "of": what}))

    def _grad_norm(self, step: int, probe: dict) -> list[Trip]:
        c = self.cfg
        norms = {key: probe[key] for key in ("d_grad_norm", "g_grad_norm")}
        holds = any(not value <= c.max_grad_norm for value in norms.values())
        return tripped(c.grad_norm and self.grads.see(holds, step, needed=1), lambda: Trip(
            "grad_norm", step, step, f"gradient norms over the bound {c.max_grad_norm:g}: D "
            f"{norms['d_grad_norm']:.3g}, G {norms['g_grad_norm']:.3g}", norms))


def tripped(seen: bool, trip: Callable[[], Trip]) -> list[Trip]:
    """[trip()] once a rule has seen its condition for long enough (Streak.see), else []: the trip, its message
    included, is made only then."""
    return [trip()] if seen else []


def rising(history: list[tuple[int, float]]) -> tuple[float, float]:
    """How much a loss rose over (step, value) pairs, as the Theil-Sen slope times the steps spanned, and how
    steadily, as Kendall's tau of value against step."""
    steps, values = np.array(history, dtype=np.float64).T
    if np.ptp(values) == 0:
        return 0.0, 0.0
    slope = stats.theilslopes(values, steps).slope
    tau = stats.kendalltau(steps, values).statistic
    return float(slope * (steps[-1] - steps[0])), float(tau if math.isfinite(tau) else 0.0)


def read_events(run_dir: Path) -> list[dict]:
    """The events of a run, oldest first."""
    return read_jsonl(Path(run_dir) / EVENTS)


def rollbacks(events: list[dict]) -> int:
    """How many rollbacks a run has made."""
    return sum(1 for event in events if event.get("event") == "rollback")
