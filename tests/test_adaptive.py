"""Hacks 23 and 24 for small datasets: adaptive augmentation (ADA), whose strength p follows D's overfitting, and
the LeCam regulariser, whose moving averages ride in D's targets; both kept on the device and in checkpoints, the
two loops agreeing, and the monitor's d_overfits rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from keras import ops

from dcgan_cli.config import ConfigError, HacksConfig, MonitorConfig, load_config
from dcgan_cli.data import sources
from dcgan_cli.nets import hacks, losses
from dcgan_cli.training import train
from dcgan_cli.training.monitor import Monitor
from dcgan_cli.training.plots import read_metrics

from conftest import TINY, crashed_copy, runs_per_loop, saved_weights

ADAPTIVE = ["hacks.adaptive_augment=true", "hacks.ada_interval=2", "hacks.ada_kimg=0.04", "hacks.lecam=true",
            "hacks.lecam_weight=0.5", "hacks.lecam_decay=0.5", "output.checkpoint_every=1",
            "output.keep_checkpoints=4", "output.log_every=1"]


def adaptive_cfg(*extra: str):
    return load_config(None, [*TINY, *ADAPTIVE, *extra])


def logged(run: Path, key: str) -> list[float]:
    return [record[key] for record in read_metrics(run) if key in record]


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    return runs_per_loop(tmp_path_factory, lambda loop: adaptive_cfg(f"train.loop={loop}"))


def images(n: int = 6, side: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, side, side, 3)).astype(np.float32)


def test_p_0_is_the_identity_and_p_1_is_hack_20():
    x = images()
    h = HacksConfig(adaptive_augment=True)
    for p, expected in ((0.0, x), (1.0, None)):
        got = hacks.adaptive_augment(x, np.random.default_rng(1), np.random.default_rng(2), p, hacks=h)
        if expected is None:
            expected = hacks.diff_augment(x, np.random.default_rng(1), hacks=HacksConfig(diff_augment=True))
        np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(expected))


def test_at_p_one_half_about_half_of_the_operations_apply():
    gates = ops.convert_to_numpy(hacks.augment_gates(4000, np.random.default_rng(0), 0.5))
    assert gates.shape == (4000, 5) and set(np.unique(gates)) == {0.0, 1.0}
    assert abs(gates.mean() - 0.5) < 0.02
    x = images(n=200)
    got = ops.convert_to_numpy(hacks.adaptive_augment(x, np.random.default_rng(1), np.random.default_rng(2), 0.5,
                                                      hacks=HacksConfig(adaptive_augment=True)))
    unchanged = np.all(got == x, axis=(1, 2, 3)).mean()
    assert 0.0 < unchanged < 0.1, "an image escapes all five operations with probability 1/32"


def adapt_stream(signs, *, p0: float = 0.0, interval: int = 2, kimg: float = 0.064, batch: int = 8):
    """p after each step of a stream of D's mean signs on reals."""
    h = HacksConfig(adaptive_augment=True, ada_interval=interval, ada_kimg=kimg)
    state, found = np.array([p0, 0, 0, 0], np.float32), []
    for step, sign in enumerate(signs, start=1):
        state = ops.convert_to_numpy(hacks.adapt(state, sign, 0.0, 0.0, step, hacks=h, batch_size=batch))
        found.append(float(state[0]))
    return found


def test_p_moves_once_per_interval_by_the_rate_ada_kimg_gives():
    rate = 8 * 2 / (1000 * 0.064)  # batch * interval / (1000 * ada_kimg) = 0.25
    assert adapt_stream([1.0] * 6) == pytest.approx([0.0, rate, rate, 2 * rate, 2 * rate, 3 * rate])
    assert adapt_stream([1.0, 0.1]) == [0.0, 0.0], "r_t = 0.55 < 0.6: p falls and stays clipped at 0"
    assert adapt_stream([1.0] * 20)[-1] == 1.0, "clipped at 1"


def test_p_falls_to_zero_when_d_cannot_tell_real_from_fake():
    chance = [1.0, -1.0] * 10  # D's sign on reals at chance: r_t = 0
    p = adapt_stream(chance, p0=0.8)
    assert p[1] == pytest.approx(0.55) and p[-1] == 0.0 and all(a >= b for a, b in zip(p, p[1:]))


def test_p_rises_on_a_d_that_memorises_a_tiny_real_set(tmp_path):
    cfg = adaptive_cfg("data.limit=8", "train.steps=16", "train.loop=compiled", "output.checkpoint_every=16")
    p = logged(train.run(cfg, run_dir=tmp_path / "run"), "augment_p")
    assert max(p) >= 0.8 and p[-1] > 0.0, f"D tells its 8 training images from G's (r_t above 0.6): {p}"


def test_both_loops_move_p_alike_and_keep_it_in_the_checkpoint(adaptive_run):
    split, compiled = logged(adaptive_run("train_on_batch"), "augment_p"), logged(adaptive_run("compiled"), "augment_p")
    assert split == pytest.approx(compiled, abs=1e-6) and max(split) > 0.0
    state = saved_weights(adaptive_run("compiled"), 4)["adaptive/0000"]
    assert state[0] == pytest.approx(split[-1]) and state[2] != 0.0 and state[3] != 0.0  # p, LeCam's averages


def test_both_loops_agree_on_weights_and_state(adaptive_run):
    split, compiled = saved_weights(adaptive_run("train_on_batch"), 4), saved_weights(adaptive_run("compiled"), 4)
    assert [key for key in split if not np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-5)] == []


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_p_and_lecams_averages_resume_bit_for_bit(adaptive_run, tmp_path, loop):
    whole = adaptive_run(loop)
    crashed = crashed_copy(whole, after=1, to=tmp_path / "crashed")
    train.run(adaptive_cfg(f"train.loop={loop}"), run_dir=crashed, resume=True)
    a, b = saved_weights(whole, 4), saved_weights(crashed, 4)
    assert [key for key in a if not np.array_equal(a[key], b[key])] == []


def test_adaptive_state_is_logged_and_plotted(adaptive_run):
    run = adaptive_run("compiled")
    records = [r for r in read_metrics(run) if "g_loss" in r]
    assert all("augment_p" in r and "d_real_sign" in r for r in records)
    assert (run / "losses.png").is_file()


def test_lecam_matches_a_hand_computation():
    weight, real_average, fake_average = 0.3, 1.5, -0.5
    p = np.array([[0.9], [0.2], [0.6], [0.3]], np.float32)
    labels = np.array([0.9, 1.1, 0.0, 0.0], np.float32)
    is_real = np.array([1, 1, 0, 0], np.float32)
    y = losses.with_averages(losses.d_targets(labels[:, None], is_real > 0), np.array([real_average, fake_average]))
    s = np.log(p[:, 0]) - np.log(1 - p[:, 0])  # D's raw scores of these beliefs
    got = ops.convert_to_numpy(losses.lecam(losses.CROSS_ENTROPY, weight=weight).d_loss(y, s[:, None]))
    bce = -(labels * np.log(p[:, 0]) + (1 - labels) * np.log(1 - p[:, 0]))
    other = np.where(is_real > 0, fake_average, real_average)
    np.testing.assert_allclose(got, bce + weight * (s - other) ** 2, rtol=1e-5)
    hinge = losses.lecam(losses.HINGE, weight=weight)
    scores = np.array([[2.0], [0.5], [-1.0], [0.25]], np.float32)
    expected = ops.convert_to_numpy(losses.HINGE.d_loss(y, scores)) + weight * (scores[:, 0] - other) ** 2
    np.testing.assert_allclose(ops.convert_to_numpy(hinge.d_loss(y, scores)), expected, rtol=1e-6)


def test_lecam_averages_follow_ds_scores_at_their_decay():
    h = HacksConfig(lecam=True, lecam_decay=0.9)
    state = np.zeros(4, np.float32)
    for step in range(1, 3):
        state = ops.convert_to_numpy(hacks.adapt(state, 1.0, 2.0, -1.0, step, hacks=h, batch_size=8))
    np.testing.assert_allclose(state, [0.0, 0.0, 2.0 * (1 - 0.9 ** 2), -1.0 * (1 - 0.9 ** 2)], rtol=1e-6)


def test_lecam_changes_ds_update_and_adaptive_augment_the_inputs(adaptive_run, plain_run):
    adapted, plain = saved_weights(adaptive_run("compiled"), 1), saved_weights(plain_run("compiled"), 1)
    assert not np.array_equal(adapted["d/0000"], plain["d/0000"])


def test_adaptive_augment_and_diff_augment_exclude_each_other():
    with pytest.raises(ConfigError, match=r"hacks.adaptive_augment: .*turn one off. Received: true"):
        load_config(None, [*TINY, "hacks.adaptive_augment=true", "hacks.diff_augment=true"])
    with pytest.raises(ConfigError, match=r"hacks.ada_kimg: .*Received: 0.0"):
        load_config(None, [*TINY, "hacks.adaptive_augment=true", "hacks.ada_kimg=0"])


def stream(gaps: list[float]) -> list[dict]:
    return [{"step": 100 * (i + 1), "probe": {"diversity": 0.9, "d_grad_norm": 1.0, "g_grad_norm": 1.0,
                                              "d_holdout_gap": gap}} for i, gap in enumerate(gaps)]


def trips(gaps: list[float], **settings) -> list:
    monitor = Monitor(MonitorConfig(**settings))
    return [trip for record in stream(gaps) for trip in monitor.observe(record)]


def test_d_overfits_trips_on_an_overfitting_stream_and_stays_quiet_on_a_healthy_one():
    healthy = [0.3, 0.2, 0.05, -0.02, 0.08, 0.27, 0.01, -0.05, 0.24, 0.14, 0.03, 0.22] * 3  # like all 10,000 photos
    overfitting = [0.3, 0.05, 0.08, 0.1, 0.18, 0.25, 0.31, 0.42, 0.5, 0.55]
    assert trips(healthy) == []
    found = trips(overfitting)
    assert [(t.rule, t.step, t.since) for t in found] == [("d_overfits", 1000, 800)]
    assert "try hacks.adaptive_augment" in found[0].message and found[0].values == {"d_holdout_gap": 0.55}
    assert trips(overfitting, d_overfits=False) == []
    assert trips([0.5] * 5) == [], "judged only after d_overfits_after"
    assert [t.step for t in trips(overfitting, d_overfits_gap=0.15)] == [800], "a lower bound trips sooner"


def test_the_probe_measures_ds_output_on_training_and_held_out_images(tmp_path):
    cfg = load_config(None, [*TINY, "data.holdout=16", "monitor.check_every=2"])
    dataset = sources.load_dataset(cfg, progress=False)
    assert len(dataset.images) == 1797 - 16 and dataset.held_out.shape == (16, 16, 16, 1)
    assert not any((dataset.images == image).all(axis=(1, 2, 3)).any() for image in dataset.held_out[:4])
    run = train.run(cfg, run_dir=tmp_path / "run")
    gaps = [r["probe"]["d_holdout_gap"] for r in read_metrics(run) if "probe" in r]
    assert len(gaps) == 2 and all(-1 < gap < 1 and gap != 0 for gap in gaps)
    plain = [r["probe"] for r in read_metrics(train.run(load_config(None, [*TINY, "monitor.check_every=2"]),
                                                        run_dir=tmp_path / "plain")) if "probe" in r]
    assert all("d_holdout_gap" not in probe for probe in plain)


def test_holding_out_every_image_is_refused():
    with pytest.raises(sources.DataError, match=r"data.holdout: .*Received: 1797"):
        sources.load_dataset(load_config(None, ["data.holdout=1797"]), progress=False)


def test_a_balanced_subset_takes_the_first_of_each_class_in_turn(tmp_path):
    x = np.arange(30, dtype=np.uint8)[:, None, None] * np.ones((1, 16, 16), np.uint8)  # image i is all i
    np.savez(tmp_path / "sorted.npz", x=x, y=np.repeat([0, 1, 2], 10))
    settings = ["data.name=npz", f"data.path={tmp_path / 'sorted.npz'}", "data.limit=7"]
    first = sources.load_dataset(load_config(None, settings), progress=False)
    balanced = sources.load_dataset(load_config(None, [*settings, "data.subset=balanced"]), progress=False)
    assert first.labels.tolist() == [0] * 7
    assert balanced.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert balanced.images[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11, 20, 21]
    digits = sources.load_dataset(load_config(None, ["data.limit=25", "data.subset=balanced"]), progress=False)
    assert np.bincount(digits.labels).tolist() == [3] * 5 + [2] * 5


def test_a_balanced_folder_subset_takes_the_first_files_of_each_class(tmp_path):
    from PIL import Image

    for name, count in (("cat", 4), ("dog", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    cfg = load_config(None, ["data.name=folder", f"data.path={tmp_path}", "data.limit=4", "data.subset=balanced",
                             f"data.cache_dir={tmp_path / 'cache'}", "model.channels=3"])
    dataset = sources.load_dataset(cfg, progress=False)
    assert np.bincount(dataset.labels).tolist() == [2, 2]


def test_a_balanced_subset_of_unlabelled_data_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 16, 16), np.uint8))
    cfg = load_config(None, ["data.name=npy", f"data.path={tmp_path / 'x.npy'}", "data.limit=4",
                             "data.subset=balanced"])
    with pytest.raises(sources.DataError, match=r"data.subset: balanced needs class labels.*Received: 'balanced'"):
        sources.load_dataset(cfg, progress=False)


def test_p_and_r_t_reach_tensorboard_with_adaptive_augmentation_and_the_gap_always():
    from dcgan_cli.training.tensorboard_log import scalar_tags

    record = {"step": 100, "augment_p": 0.25, "d_real_sign": 0.75, "g_grad_norm": 2.0,
              "probe": {"d_holdout_gap": 0.5}}
    tags = scalar_tags(record, adaptive=True)
    assert tags["augment/p"] == 0.25 and tags["d_output/real_sign"] == 0.75 and tags["health/d_holdout_gap"] == 0.5
    assert scalar_tags(record, adaptive=False) == {"gradients/g": 2.0, "health/d_holdout_gap": 0.5}
