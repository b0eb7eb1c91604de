"""The monitor's rules on synthetic metric streams: each trips exactly when it should, once per episode, and never
on healthy noisy streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dcgan_cli.config import MonitorConfig
from dcgan_cli.training.monitor import Monitor, rising

LOG_EVERY = 50


def log(step: int, *, d_loss_fake=0.3, d_fake_mean=0.2, g_loss=2.5, g_grad_norm=3.0) -> dict:
    return {"step": step, "d_loss_real": 0.4, "d_loss_fake": d_loss_fake, "g_loss": g_loss, "d_real_mean": 0.75,
            "d_fake_mean": d_fake_mean, "g_grad_norm": g_grad_norm, "images_per_s": 2000.0}


def probe(step: int, diversity=0.9, d_grad_norm=10.0, g_grad_norm=20.0) -> dict:
    return {"step": step, "probe": {"diversity": diversity, "d_grad_norm": d_grad_norm, "g_grad_norm": g_grad_norm}}


def observed(monitor: Monitor, records) -> list:
    return [t for record in records for t in monitor.observe(record)]


def trips(monitor: Monitor, records) -> list[tuple[str, int, int]]:
    return [(t.rule, t.step, t.since) for t in observed(monitor, records)]


def healthy_logs(rng: np.random.Generator, count: int) -> list[dict]:
    """Logs like the default digits run's (measured: D(G(z)) 0.09-0.25, D's loss on fakes 0.21-0.36, G's loss
    drifting from 2.3 to 3.0 with noise), with more noise than measured."""
    return [log((i + 1) * LOG_EVERY, d_loss_fake=rng.uniform(0.18, 0.45), d_fake_mean=rng.uniform(0.07, 0.3),
                g_loss=2.3 + 0.7 * (1 - np.exp(-i / 15)) + rng.normal(0, 0.15)) for i in range(count)]


def test_healthy_noisy_streams_trip_nothing():
    rng = np.random.default_rng(0)
    monitor = Monitor(MonitorConfig(), fake_floor=FLOOR)
    records = healthy_logs(rng, 600)
    records += [probe(step, diversity=rng.uniform(0.8, 1.0), d_grad_norm=rng.uniform(5, 90),
                      g_grad_norm=rng.uniform(5, 50)) for step in range(100, 30001, 100)]
    records += [{"step": step, "eval": {"modes_covered": int(rng.integers(8, 11)), "classes": 10}}
                for step in range(250, 30001, 250)]
    assert trips(monitor, sorted(records, key=lambda r: r["step"])) == []


def test_d_wins_trips_at_the_kth_log_in_a_row_and_once_per_episode():
    def won(steps):
        return [log(s, d_loss_fake=0.05, d_fake_mean=0.01) for s in steps]

    monitor = Monitor(MonitorConfig(d_wins_logs=5))
    records = ([log(s) for s in range(50, 501, 50)] + won(range(550, 1001, 50))
               + [log(1050)] + won(range(1100, 1301, 50))  # one clear log: the same episode
               + [log(s) for s in range(1350, 1551, 50)] + won(range(1600, 1801, 50)))  # five: a new one
    assert trips(monitor, records) == [("d_wins", 750, 550), ("d_wins", 1800, 1600)]


FLOOR = 0.05 * 0.95  # the default labels' floor of D(G(z)): 5% of the fakes labelled real, at 0.95 on average


def saturated(steps, *, flips: bool) -> list[dict]:
    """Logs of a D sure of every fake, as measured on the digits with G's learning rate at 1e-6: with 5% of its fake
    labels flipped to real (hack 11) D(G(z)) stays at 0.044-0.059, the flipped ones' share, and its loss on fakes at
    0.19-0.22; without, both fall below 0.002. G still has its gradient (the loss on D's logits)."""
    rng = np.random.default_rng(3)
    return [log(s, d_loss_fake=rng.uniform(0.19, 0.22) if flips else 1e-3,
                d_fake_mean=rng.uniform(0.044, 0.059) if flips else rng.uniform(2e-4, 2e-3), g_grad_norm=40.0)
            for s in steps]


@pytest.mark.parametrize("flips", [True, False], ids=["noisy labels", "clean labels"])
def test_d_wins_judges_d_fake_output_from_the_floor_its_labels_allow(flips):
    monitor = Monitor(MonitorConfig(), fake_floor=FLOOR if flips else 0.0)
    found = observed(monitor, [log(s) for s in range(50, 501, 50)] + saturated(range(550, 1001, 50), flips=flips))
    assert [(t.rule, t.step, t.since) for t in found] == [("d_wins", 650, 550)]
    bound = "0.0675 (its labels' floor 0.0475 + 0.02)" if flips else "0.02 (its labels' floor 0 + 0.02)"
    assert f"< {bound}: D is sure of every fake" in found[0].message


def test_d_wins_stays_quiet_above_the_floor_on_the_default_labels():
    rng = np.random.default_rng(4)
    healthy = [log(s, d_fake_mean=rng.uniform(0.085, 0.3)) for s in range(50, 30001, 50)]  # digits, CIFAR-10: >= 0.089
    assert trips(Monitor(MonitorConfig(), fake_floor=FLOOR), healthy) == []
    assert trips(Monitor(MonitorConfig(), fake_floor=0.0), saturated(range(50, 1001, 50), flips=True)) == [], \
        "read against the floor of clean labels, a D at the flipped labels' floor is not at its own"


def test_d_wins_trips_on_a_vanished_gradient_of_g():
    records = [log(s) for s in range(50, 301, 50)] + [log(s, g_grad_norm=0.0) for s in range(350, 601, 50)]
    found = observed(Monitor(MonitorConfig()), records)
    assert [(t.rule, t.step, t.since) for t in found] == [("d_wins", 450, 350)]
    assert "G's gradient norm 0 < 0.001: G has stopped learning" in found[0].message


def test_d_wins_ignores_a_low_loss_on_fakes_and_logs_before_the_gradient_norm():
    low_loss = [log(s, d_loss_fake=0.01, d_fake_mean=0.2) for s in range(50, 1001, 50)]
    without_norm = [{key: value for key, value in log(s).items() if key != "g_grad_norm"}
                    for s in range(1050, 1501, 50)]
    assert trips(Monitor(MonitorConfig()), low_loss + without_norm) == []


def test_g_rising_trips_on_the_first_full_window_of_a_steady_rise():
    monitor = Monitor(MonitorConfig(g_rising_logs=20, g_rising_min=1.0, g_rising_tau=0.7))
    records = [log((i + 1) * 50, g_loss=1.0 + 0.06 * i) for i in range(40)]  # +1.14 over 19 logs
    assert trips(monitor, records) == [("g_rising", 1000, 50)]


def test_g_rising_ignores_a_rise_smaller_than_the_minimum_or_a_noisy_one():
    rng = np.random.default_rng(1)
    small = [log((i + 1) * 50, g_loss=1.0 + 0.04 * i) for i in range(40)]  # +0.76 over a window
    noisy = [log(2000 + (i + 1) * 50, g_loss=1.0 + 0.06 * i + rng.normal(0, 1.5)) for i in range(40)]
    falling = [log(4000 + (i + 1) * 50, g_loss=5.0 - 0.1 * i) for i in range(40)]
    assert trips(Monitor(MonitorConfig()), small) == []
    assert trips(Monitor(MonitorConfig()), noisy) == []
    assert trips(Monitor(MonitorConfig()), falling) == []


def test_rising_measures_the_rise_and_its_steadiness():
    rise, tau = rising([(step, 0.01 * step) for step in range(0, 1001, 50)])
    assert rise == pytest.approx(10.0) and tau == pytest.approx(1.0)
    assert rising([(step, 1.0) for step in range(0, 1001, 50)]) == (0.0, 0.0)


def test_collapse_trips_after_the_set_number_of_low_checks_once_judged():
    cfg = MonitorConfig(collapse_diversity=0.5, collapse_checks=2, collapse_after=500)
    early = [probe(100, 0.2), probe(200, 0.3), probe(300, 0.9)]  # G's first samples: not judged
    dip = [probe(400, 0.9), probe(600, 0.4), probe(700, 0.8)]  # one low check
    collapse = [probe(s, 0.3) for s in range(800, 1301, 100)]
    assert trips(Monitor(cfg), early + dip + collapse) == [("collapse", 900, 800)]


def test_collapse_is_also_a_drop_of_the_modes_covered():
    monitor = Monitor(MonitorConfig(collapse_mode_drop=3))
    modes = [10, 9, 10, 8, 10, 7, 6, 10, 5]
    records = [{"step": 250 * (i + 1), "eval": {"modes_covered": m, "classes": 10}} for i, m in enumerate(modes)]
    assert trips(monitor, records) == [("collapse", 1500, 1500), ("collapse", 2250, 2250)]


def test_without_classes_collapse_is_a_drop_of_the_ndb_bins_covered():
    monitor = Monitor(MonitorConfig(collapse_mode_drop=3))
    covered = [12, 18, 19, 17, 19, 16, 15, 19]
    records = [{"step": 250 * (i + 1), "eval": {"features": "rotation", "bins_covered": b, "bins": 20, "ndb": 9}}
               for i, b in enumerate(covered)]
    found = observed(monitor, records)
    assert [(t.rule, t.step) for t in found] == [("collapse", 1500)]
    assert "16 of 20 NDB bins covered, 3 fewer than the run's best (19" in found[0].message


def test_gradient_norms_over_the_bound_or_not_finite_trip():
    monitor = Monitor(MonitorConfig(max_grad_norm=100.0))
    records = [probe(100, d_grad_norm=99.0), probe(200, g_grad_norm=150.0), probe(300, g_grad_norm=160.0),
               probe(400), probe(500, d_grad_norm=float("nan"))]
    assert trips(monitor, records) == [("grad_norm", 200, 200), ("grad_norm", 500, 500)]


def test_a_rule_switched_off_never_trips():
    off = MonitorConfig(d_wins=False, g_rising=False, collapse=False, grad_norm=False)
    records = ([log(s, d_loss_fake=0.01, d_fake_mean=0.01, g_loss=s / 100) for s in range(50, 3001, 50)]
               + [probe(s, diversity=0.1, d_grad_norm=1e9) for s in range(600, 3001, 100)])
    assert trips(Monitor(off), sorted(records, key=lambda r: r["step"])) == []
    assert {rule for rule, _, _ in trips(Monitor(MonitorConfig()), sorted(records, key=lambda r: r["step"]))} == {
        "d_wins", "g_rising", "collapse", "grad_norm"}


def test_a_replayed_monitor_goes_on_as_the_uninterrupted_one():
    rng = np.random.default_rng(2)
    records = healthy_logs(rng, 60) + [log(3050 + 50 * i, d_loss_fake=0.02, d_fake_mean=0.01) for i in range(8)]
    records += [probe(s, diversity=0.9 if s < 3000 else 0.2) for s in range(100, 3401, 100)]
    records.sort(key=lambda r: r["step"])
    whole = trips(Monitor(MonitorConfig()), records)
    cut = next(i for i, r in enumerate(records) if r["step"] > 3100)
    resumed = Monitor(MonitorConfig())
    resumed.replay(records[:cut])
    assert whole[-1][1] > 3100 and trips(resumed, records[cut:]) == [t for t in whole if t[1] > 3100]


def test_non_finite_is_always_a_trip():
    trip = Monitor(MonitorConfig()).non_finite(7, 5, {"g_loss": float("nan")})
    assert (trip.rule, trip.step, trip.since) == ("non_finite", 7, 5) and "g_loss=nan" in trip.message
    assert trip.event("stop")["action"] == "stop"


def test_every_threshold_is_a_config_value():
    names = {f.name for f in dataclasses.fields(MonitorConfig)}
    assert {"d_wins_margin", "d_wins_grad_norm", "d_wins_logs", "g_rising_logs", "g_rising_min", "g_rising_tau",
            "collapse_diversity", "collapse_checks", "collapse_mode_drop", "max_grad_norm", "action",
            "rollback_lr_factor", "max_rollbacks"} <= names
