"""The stabilisers after the eleven hacks (hacks 12 on): each switch's "off" leaves the run exactly as it was, its
"on" changes the right thing, in both loops."""

from __future__ import annotations

import numpy as np
import pytest

from dcgan_cli import hacks, train
from dcgan_cli.ablate.design import FACTORS, GROUPS, parse_factors, variants
from dcgan_cli.config import HacksConfig, load_config


def weights(run) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / "step_000004" / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


def assert_same_training(a, b) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert [key for key in first if not np.array_equal(first[key], second[key])] == []


def run(tiny_overrides, tmp_path, name: str, *overrides: str):
    return train.run(load_config(None, [*tiny_overrides, *overrides]), run_dir=tmp_path / name)


# 12 ttur
def test_ttur_gives_d_and_g_their_own_learning_rates():
    on = HacksConfig(ttur=True, d_learning_rate=4e-4, g_learning_rate=1e-4)
    assert float(hacks.optimizer(on, network="d").learning_rate) == pytest.approx(4e-4)
    assert float(hacks.optimizer(on, network="g").learning_rate) == pytest.approx(1e-4)
    off = HacksConfig()
    assert [float(hacks.optimizer(off, network=n).learning_rate) for n in "dg"] == [pytest.approx(2e-4)] * 2
    assert float(hacks.optimizer(HacksConfig(adam=False, ttur=True), network="d").learning_rate) == pytest.approx(4e-4)


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_ttur_off_and_ttur_at_the_shared_rate_train_alike(tiny_overrides, tmp_path, loop):
    plain = run(tiny_overrides, tmp_path, "plain", f"train.loop={loop}")
    same = run(tiny_overrides, tmp_path, "same", f"train.loop={loop}", "hacks.ttur=true",
               "hacks.d_learning_rate=2e-4", "hacks.g_learning_rate=2e-4")
    assert_same_training(plain, same)
    faster_d = run(tiny_overrides, tmp_path, "ttur", f"train.loop={loop}", "hacks.ttur=true")
    assert weights(faster_d)["d/0000"].tolist() != weights(plain)["d/0000"].tolist()


def test_the_new_switches_are_ablation_factors_off_by_default():
    base = load_config(None, [])
    factors, everything = parse_factors("new")
    assert everything and [f.name for f in factors] == list(GROUPS["new"]) and "ttur" in GROUPS["new"]
    made, *_ = variants(base, factors, design="leave-one-out", everything=True)
    assert [v.name for v in made[1:]] == [f"{name}-on" for name in GROUPS["new"]]
    assert all(getattr(base.hacks, FACTORS[name].path.split(".")[1]) is False for name in GROUPS["new"])
