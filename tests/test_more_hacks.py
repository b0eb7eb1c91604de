"""The stabilisers after the eleven hacks (hacks 12 on): each switch's "off" leaves the run exactly as it was, its
"on" changes the right thing, in both loops."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from dcgan_cli.nets import hacks
from dcgan_cli.training import loops, train
from dcgan_cli.ablate.design import FACTORS, GROUPS, parse_factors, variants
from dcgan_cli.config import HacksConfig, flatten, load_config
from dcgan_cli.nets.layers import MinibatchStdDev
from dcgan_cli.nets.models import build_discriminator

from conftest import crashed_copy

# |weights| summed after the tiny config's 4 steps, measured before these switches existed (TensorFlow, CPU): with
# every new switch off a run must still train exactly as it did.
BEFORE = {"g/0000": 32.7682, "d/0000": 2.00489, "d/0003": 16.007, "g_optimizer/0002": 15.4049,
          "d_optimizer/0002": 11.5983}


def weights(run) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / "step_000004" / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


def assert_same_training(a, b) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert [key for key in first if not np.array_equal(first[key], second[key])] == []


def run(tiny_overrides, tmp_path, name: str, *overrides: str):
    return train.run(load_config(None, [*tiny_overrides, *overrides]), run_dir=tmp_path / name)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="measured on TensorFlow")
@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_with_every_new_switch_off_a_run_trains_as_before_they_existed(plain_run, loop):
    found = weights(plain_run(loop))
    assert {key: float(np.abs(found[key]).astype(np.float64).sum()) for key in BEFORE} == pytest.approx(BEFORE,
                                                                                                     rel=1e-5)


# 12 ttur
def test_ttur_gives_d_and_g_their_own_learning_rates():
    on = HacksConfig(ttur=True, d_learning_rate=4e-4, g_learning_rate=1e-4)
    assert float(hacks.optimizer(on, network="d").learning_rate) == pytest.approx(4e-4)
    assert float(hacks.optimizer(on, network="g").learning_rate) == pytest.approx(1e-4)
    off = HacksConfig()
    assert [float(hacks.optimizer(off, network=n).learning_rate) for n in "dg"] == [pytest.approx(2e-4)] * 2
    assert float(hacks.optimizer(HacksConfig(adam=False, ttur=True), network="d").learning_rate) == pytest.approx(4e-4)


@pytest.mark.parametrize("loop", ["train_on_batch"])
def test_ttur_off_and_ttur_at_the_shared_rate_train_alike(tiny_overrides, tmp_path, plain_run, loop):
    plain = plain_run(loop)
    same = run(tiny_overrides, tmp_path, "same", f"train.loop={loop}", "hacks.ttur=true",
               "hacks.d_learning_rate=2e-4", "hacks.g_learning_rate=2e-4")
    assert_same_training(plain, same)
    faster_d = run(tiny_overrides, tmp_path, "ttur", f"train.loop={loop}", "hacks.ttur=true")
    assert weights(faster_d)["d/0000"].tolist() != weights(plain)["d/0000"].tolist()


def test_the_new_switches_are_ablation_factors_off_by_default():
    base = load_config(None, [])
    factors, everything = parse_factors("new")
    assert everything and [f.name for f in factors] == list(GROUPS["new"]) and "ttur" in GROUPS["new"]
    made, _, _, notes = variants(base, factors, design="leave-one-out", everything=True)
    live = [name for name in GROUPS["new"] if name != "class_conditional"]  # the default data has no labels
    assert [v.name for v in made[1:]] == [f"{name}-{FACTORS[name].word(FACTORS[name].on)}" for name in live]
    assert "ema-0.999" in [v.name for v in made] and "replay-on" in [v.name for v in made]
    assert notes == ["left out class_conditional: data.labels is false, so there are no classes for G and D to see "
                     "in the base config, so switching it changes nothing"]
    values = flatten(base)
    assert all(values[FACTORS[name].path] == FACTORS[name].off for name in GROUPS["new"])


# 19 minibatch_std
def test_minibatch_std_adds_the_batchs_spread_as_a_feature_map(tiny_cfg):
    from dataclasses import replace

    on = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, minibatch_std=True))
    d_on, d_off = (build_discriminator(cfg, np.random.default_rng(0)) for cfg in (on, tiny_cfg))
    names_on = [layer.name for layer in d_on.layers]
    assert "minibatch_std" in names_on and "minibatch_std" not in [layer.name for layer in d_off.layers]
    before = d_on.get_layer(names_on[names_on.index("minibatch_std") - 1]).output.shape
    assert d_on.get_layer("minibatch_std").output.shape == (*before[:-1], before[-1] + 1)
    x = np.random.default_rng(1).normal(size=(6, 4, 4, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(MinibatchStdDev()(x))
    assert np.array_equal(out[..., :3], x)
    assert np.allclose(out[..., 3], np.sqrt(x.var(axis=0) + 1e-8).mean(), rtol=1e-5)
    same = np.repeat(x[:1], 6, axis=0)
    assert np.allclose(keras.ops.convert_to_numpy(MinibatchStdDev()(same))[..., 3], 1e-4, rtol=1e-3)


def test_minibatch_std_trains_alike_in_both_loops(tiny_overrides, tmp_path, plain_run):
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.minibatch_std=true")
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    plain = weights(plain_run("train_on_batch"))
    assert [key for key in plain if plain[key].shape != split[key].shape] == ["d/0007", "d_optimizer/0012",
                                                                           "d_optimizer/0013"]  # score kernel, moments


# 16 spectral_norm
def sn_cfg(tiny_cfg):
    from dataclasses import replace

    return replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, spectral_norm=True))


def test_spectral_norm_wraps_ds_convolutions_and_score_and_divides_by_the_largest_singular_value(tiny_cfg):
    from dcgan_cli.nets.layers import SpectralNorm

    d = build_discriminator(sn_cfg(tiny_cfg), np.random.default_rng(0))
    wrapped = [layer for layer in d.layers if isinstance(layer, SpectralNorm)]
    assert [layer.name for layer in wrapped] == ["down1_sn", "down2_sn", "score_sn"]
    dense = wrapped[-1]
    x = np.random.default_rng(1).normal(size=(5, dense.layer.kernel.shape[0])).astype(np.float32)
    for _ in range(60):  # the power iteration converges
        dense(x, training=True)
    w = keras.ops.convert_to_numpy(dense.layer.kernel)
    sigma = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False).max()
    expected = x @ (w / sigma) + keras.ops.convert_to_numpy(dense.layer.bias)
    assert np.allclose(keras.ops.convert_to_numpy(dense(x)), expected, rtol=1e-4, atol=1e-6)
    conv = wrapped[0]
    images = np.random.default_rng(2).normal(size=(2, 16, 16, 1)).astype(np.float32)
    for _ in range(60):
        conv(images, training=True)
    k = keras.ops.convert_to_numpy(conv.layer.kernel)
    sigma = np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False).max()
    reference = keras.ops.convert_to_numpy(keras.ops.conv(images, k / sigma, strides=2, padding="same"))
    reference = reference + keras.ops.convert_to_numpy(conv.layer.bias)
    assert np.allclose(keras.ops.convert_to_numpy(conv(images)), reference, rtol=1e-4, atol=1e-5)


def test_spectral_norm_moves_only_in_ds_own_updates(tiny_cfg):
    from dcgan_cli.state import draws
    from dcgan_cli.nets.models import build_models

    cfg = sn_cfg(tiny_cfg)
    models = build_models(cfg, np.random.default_rng(0))
    images = np.random.default_rng(3).integers(0, 256, size=(40, 16, 16, 1), dtype=np.uint8)
    step_draws = draws.Draws(cfg, count=len(images), seed=0)
    prepare = loops.step_preparer(models.g, step_draws, resident=True)
    batches, *g_side = prepare(images, 1)
    before = [np.array(v.numpy()) for v in models.d.weights]
    loops.update_g(models, *g_side)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, models.d.weights)), "frozen D changed"
    loops.update_d(models, batches, cfg=cfg)
    u_paths = [v.path for v in models.d.weights if v.path.endswith("/u")]
    moved = [v.path for a, v in zip(before, models.d.weights) if not np.array_equal(a, v.numpy())]
    assert len(u_paths) == 3 and set(u_paths) <= set(moved)


def test_keras_own_spectral_normalization_changes_a_frozen_layer():
    """Why hack 16 has its own layer: Keras' wrapper rewrites the kernel of a frozen layer in training mode."""
    layer = keras.layers.SpectralNormalization(keras.layers.Dense(3))
    x = np.ones((2, 4), np.float32)
    layer(x)
    layer.trainable = False
    before = keras.ops.convert_to_numpy(layer.layer.kernel).copy()
    layer(x, training=True)
    assert not np.array_equal(before, keras.ops.convert_to_numpy(layer.layer.kernel))


def test_spectral_norm_trains_alike_in_both_loops(tiny_overrides, tmp_path):
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.spectral_norm=true")
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert split.keys() == compiled.keys()
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)


# 17 hinge_loss
def test_hinge_losses_and_their_probability():
    from dcgan_cli.nets import losses

    s = np.array([[2.0], [0.5], [-0.5], [-3.0]], np.float32)
    y = np.array([[1.0, 1.0], [1.2, 1.0], [0.0, 0.0], [0.0, 0.0]], np.float32)  # label, source
    d = keras.ops.convert_to_numpy(losses.hinge_d_loss(y, s))
    assert np.allclose(d, [0.0, 0.5, 0.5, 0.0])  # the label 1.2 counts as 1
    assert np.allclose(keras.ops.convert_to_numpy(losses.hinge_g_loss(np.ones_like(s), s)), [-2.0, -0.5, 0.5, 3.0])
    found = {k: float(v) for k, v in losses.HINGE.d_metrics(y, s).items()}
    assert found["d_real_mean"] == pytest.approx(float(np.mean(1 / (1 + np.exp(-s[:2, 0])))))
    assert found["d_loss_fake"] == pytest.approx(0.25)
    assert hacks.objective(HacksConfig()) is losses.CROSS_ENTROPY
    assert hacks.objective(HacksConfig(hinge_loss=True)) is losses.HINGE


def test_hinge_loss_on_ds_raw_score_and_both_loops_agree(tiny_overrides, tmp_path, tiny_cfg, plain_run):
    from dataclasses import replace

    d = build_discriminator(replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, hinge_loss=True)),
                            np.random.default_rng(0))
    assert d.layers[-1].name == "d_score" and d.layers[-1].activation.__name__ == "linear"
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.hinge_loss=true")
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    from dcgan_cli.training.plots import read_metrics

    logged = [read_metrics(r)[-1] for r in runs.values()]
    for record in logged:
        assert 0 < record["d_real_mean"] < 1 and 0 < record["d_fake_mean"] < 1  # sigmoid of the scores
    assert logged[0]["g_loss"] == pytest.approx(logged[1]["g_loss"], rel=1e-3, abs=1e-4)
    plain = weights(plain_run("train_on_batch"))
    assert not np.allclose(plain["d/0000"], split["d/0000"])


# 18 r1_penalty
def test_r1_is_refused_in_the_train_on_batch_loop():
    from dcgan_cli.config import ConfigError

    with pytest.raises(ConfigError, match="hacks.r1_penalty: needs train.loop: compiled.*Received: true"):
        load_config(None, ["hacks.r1_penalty=true"])
    assert load_config(None, ["hacks.r1_penalty=true", "train.loop=compiled"]).hacks.r1_penalty


def test_r1_penalty_value_and_its_lazy_weight():
    gradient = np.arange(2 * 2 * 2 * 1, dtype=np.float32).reshape(2, 2, 2, 1)  # norms^2: 14 and 126
    is_real = np.array([True, False])
    on = HacksConfig(r1_penalty=True, r1_gamma=10.0)
    assert float(hacks.r1_penalty(gradient, is_real, 3, hacks=on)) == pytest.approx(5.0 * 14)
    lazy = HacksConfig(r1_penalty=True, r1_gamma=10.0, r1_every=4)
    assert float(hacks.r1_penalty(gradient, is_real, 8, hacks=lazy)) == pytest.approx(4 * 5.0 * 14)
    assert [bool(hacks.r1_due(s, hacks=lazy)) for s in (3, 4, 8)] == [False, True, True]
    assert hacks.r1_penalty(gradient, is_real, 3, hacks=HacksConfig()) == 0.0


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow gradient tape outside")
def test_r1_penalty_gradient_matches_a_finite_difference():
    """The penalty's gradient with respect to D's weights (a gradient of a gradient, taken as the compiled step
    takes it) against central differences, on a small float64 D."""
    import tensorflow as tf

    from dcgan_cli.backend import input_gradient

    inputs = keras.Input((3,), dtype="float64")
    hidden = keras.layers.Dense(4, activation="tanh", dtype="float64")(inputs)
    d = keras.Model(inputs, keras.layers.Dense(1, dtype="float64")(hidden))
    x = tf.constant(np.random.default_rng(1).normal(size=(5, 3)))
    kernel = d.trainable_variables[0]
    cfg = HacksConfig(r1_penalty=True, r1_gamma=10.0)
    real = np.array([True, True, False, True, False])

    def penalty():
        _, _, gradient = input_gradient(lambda images: (tf.reduce_sum(d(images)), None), x, differentiable=True)
        return hacks.r1_penalty(gradient, real, 1, hacks=cfg)

    with tf.GradientTape() as outer:
        value = penalty()
    analytic = outer.gradient(value, kernel).numpy()
    original = kernel.numpy()
    for index in ((0, 0), (2, 3)):
        numeric = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * 1e-6
            kernel.assign(shifted)
            numeric.append(float(penalty()))
        kernel.assign(original)
        assert analytic[index] == pytest.approx((numeric[0] - numeric[1]) / 2e-6, rel=1e-5)


def saved_at(run: Path, step: int) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"step_{step:06d}" / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


def r1_trained(tiny_overrides, tmp_path, name: str, steps: int, *extra: str) -> dict[str, np.ndarray]:
    cfg = load_config(None, [*tiny_overrides, "train.loop=compiled", f"train.steps={steps}",
                             f"output.checkpoint_every={steps}", *extra])
    return saved_at(train.run(cfg, run_dir=tmp_path / name), steps)


def test_r1_changes_ds_update(tiny_overrides, tmp_path, plain_run):
    plain = saved_at(plain_run("compiled"), 1)
    penalised = r1_trained(tiny_overrides, tmp_path, "r1", 1, "hacks.r1_penalty=true")
    assert not np.array_equal(plain["d/0000"], penalised["d/0000"])


def test_lazy_r1_applies_only_on_due_steps(tiny_overrides, tmp_path, plain_run):
    lazy = ("hacks.r1_penalty=true", "hacks.r1_every=2")
    plain, skipped = saved_at(plain_run("compiled"), 1), r1_trained(tiny_overrides, tmp_path, "lazy", 1, *lazy)
    assert all(np.allclose(plain[key], skipped[key], rtol=1e-4, atol=1e-6) for key in plain)  # step 1: not due
    assert not np.array_equal(saved_at(plain_run("compiled"), 2)["d/0000"],
                              r1_trained(tiny_overrides, tmp_path, "lazy2", 2, *lazy)["d/0000"])


# 14 instance_noise
def test_instance_noise_follows_its_schedule_on_every_d_input(tiny_cfg):
    from dataclasses import replace

    from dcgan_cli.state import draws

    h = HacksConfig(instance_noise=True, instance_noise_std=0.2, instance_noise_steps=1000)
    assert [float(hacks.noise_std(s, hacks=h)) for s in (0, 250, 1000, 5000)] == pytest.approx([0.2, 0.15, 0, 0])
    cfg = replace(tiny_cfg, hacks=h)
    step_draws = draws.Draws(cfg, count=10, seed=0)
    images = np.zeros((256, 16, 16, 1), np.float32)
    for update in (0, 1, draws.G_UPDATE):
        noisy = keras.ops.convert_to_numpy(step_draws.d_input(images, 250, update=update))
        assert noisy.std() == pytest.approx(0.15, rel=0.02) and abs(noisy.mean()) < 0.005
    assert np.array_equal(keras.ops.convert_to_numpy(step_draws.d_input(images, 1000, update=0)), images)
    first, second = (keras.ops.convert_to_numpy(step_draws.d_input(images, 250, update=k)) for k in (0, 1))
    assert not np.allclose(first, second)  # real and fake batches get their own noise
    off = draws.Draws(tiny_cfg, count=10, seed=0)
    assert off.d_input(images, 250, update=0) is images


def test_instance_noise_reaches_the_g_update_and_both_loops_agree(tiny_overrides, tmp_path, tiny_cfg, plain_run):
    from dataclasses import replace

    from dcgan_cli.nets.models import build_models

    noisy = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, instance_noise=True))
    assert [i.name for i in build_models(noisy, np.random.default_rng(0)).gan.inputs] == ["z", "d_input_noise"]
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.instance_noise=true",
                      "hacks.instance_noise_std=0.5") for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    plain = weights(plain_run("train_on_batch"))
    assert not np.allclose(plain["g/0000"], split["g/0000"]) and not np.allclose(plain["d/0000"], split["d/0000"])


# 20 diff_augment
def numpy_diff_augment(x: np.ndarray, u: np.ndarray, policy=("color", "translation", "cutout")) -> np.ndarray:
    """DiffAugment's colour, translation and cutout (those of `policy`) written out per image with NumPy."""
    out = np.empty_like(x)
    n, h, w, c = x.shape
    for i in range(n):
        y = x[i]
        if "color" in policy:
            y = y + (u[i, 0] - 0.5)
            y = (y - y.mean(axis=-1, keepdims=True)) * (2 * u[i, 1]) + y.mean(axis=-1, keepdims=True)
            y = (y - y.mean()) * (u[i, 2] + 0.5) + y.mean()
        if "translation" in policy:
            shift_y = int(np.floor(u[i, 3] * 5)) - 2  # 16 * 0.125 = 2 pixels each way
            shift_x = int(np.floor(u[i, 4] * 5)) - 2
            moved = np.zeros_like(y)
            for r in range(h):
                for col in range(w):
                    sr, sc = r - shift_y, col - shift_x
                    if 0 <= sr < h and 0 <= sc < w:
                        moved[r, col] = y[sr, sc]
            y = moved
        if "cutout" in policy:
            top = int(np.floor(u[i, 5] * 17)) - 4  # an 8-pixel square
            left = int(np.floor(u[i, 6] * 17)) - 4
            y = y.copy()
            y[max(top, 0):max(top + 8, 0), max(left, 0):max(left + 8, 0)] = 0
        out[i] = y
    return out


def test_diff_augment_is_diffaugments_colour_translation_and_cutout():
    from dcgan_cli.nets.layers import diff_augment

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(12, 16, 16, 3)).astype(np.float32)
    u = rng.uniform(0, 1, size=(12, 7)).astype(np.float32)
    assert np.allclose(keras.ops.convert_to_numpy(diff_augment(x, u)), numpy_diff_augment(x, u), atol=1e-5)


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ("color", "cutout"),
                                    ("translation", "cutout")])
def test_diff_augment_policy_runs_only_its_operations(policy):
    from dcgan_cli.nets.layers import diff_augment

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(12, 16, 16, 3)).astype(np.float32)
    u = rng.uniform(0, 1, size=(12, 7)).astype(np.float32)
    found = keras.ops.convert_to_numpy(diff_augment(x, u, policy=policy))
    assert np.allclose(found, numpy_diff_augment(x, u, policy), atol=1e-5)
    assert not np.allclose(found, numpy_diff_augment(x, u), atol=1e-3)  # not the full policy either
    on = np.array([[name in policy for name in ("color",) * 3 + ("translation", "cutout")]] * 12, np.float32)
    assert np.allclose(found, keras.ops.convert_to_numpy(diff_augment(x, u, on)), atol=1e-6)  # hack 23's gates


def test_diff_augment_is_the_same_function_on_real_and_fake_and_differentiable(tiny_cfg):
    from dataclasses import replace

    from dcgan_cli.state import draws
    from dcgan_cli.backend import input_gradient
    from dcgan_cli.nets.layers import diff_augment

    cfg = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, diff_augment=True))
    step_draws = draws.Draws(cfg, count=10, seed=0)
    images = np.random.default_rng(1).uniform(-1, 1, size=(8, 16, 16, 1)).astype(np.float32)
    for update in (0, 1, draws.G_UPDATE):  # real batch, fake batch, G's update
        u = hacks.augment_draws(8, step_draws.random(5, slot=draws.AUGMENT_SLOT + update))
        expected = keras.ops.convert_to_numpy(diff_augment(images, u))
        found = keras.ops.convert_to_numpy(step_draws.d_input(images, 5, update=update))
        assert np.array_equal(found, expected) and not np.allclose(found, images)
    _, _, gradient = input_gradient(lambda x: (keras.ops.sum(diff_augment(x, u) ** 2), None),
                                    keras.ops.convert_to_tensor(images))
    gradient = keras.ops.convert_to_numpy(gradient)
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0


def test_diff_augment_reaches_the_g_update_and_both_loops_agree(tiny_overrides, tmp_path, tiny_cfg):
    from dataclasses import replace

    from dcgan_cli.nets.models import build_models

    both = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, diff_augment=True, instance_noise=True,
                                           diff_augment_policy=("color", "cutout")))
    gan = build_models(both, np.random.default_rng(0)).gan
    assert [i.name for i in gan.inputs] == ["z", "augment_draws", "d_input_noise"]
    assert gan.get_layer("augmented").policy == ("color", "cutout")
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.diff_augment=true",
                      "hacks.instance_noise=true", "hacks.diff_augment_policy=[cutout, color]")
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    plain = weights(run(tiny_overrides, tmp_path, "plain", "hacks.instance_noise=true"))
    assert not np.allclose(plain["g/0000"], split["g/0000"])


# 13 train_d_more
def test_train_d_more_gives_each_d_sub_step_its_own_draws(tiny_cfg):
    from dataclasses import replace

    from dcgan_cli.state import draws

    cfg = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, train_d_more=True, d_steps=3))
    step_draws = draws.Draws(cfg, count=100, seed=0)
    assert [step_draws.key(2, sub) for sub in (0, 1, 2, None)] == [4, 5, 6, 6]
    one = draws.Draws(tiny_cfg, count=100, seed=0)
    assert one.d_steps == 1 and one.key(7, 0) == 7 and one.key(7, None) == 7
    subs = [keras.ops.convert_to_numpy(step_draws.batch_index(2, sub)) for sub in range(3)]
    assert not np.array_equal(subs[0], subs[1])
    assert np.array_equal(keras.ops.convert_to_numpy(step_draws.step_index(2)), np.concatenate(subs))


@pytest.mark.parametrize("data_on_device", [True, False])
def test_train_d_more_updates_d_d_steps_times_per_g_update_alike_in_both_loops(tiny_overrides, tmp_path,
                                                                                data_on_device):
    fraction = "train.device_data_fraction=" + ("0.25" if data_on_device else "0")
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", "hacks.train_d_more=true",
                      "hacks.d_steps=3", fraction) for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    iterations = {name: int(split[f"{name}_optimizer/0000"]) for name in ("d", "g")}
    assert iterations == {"d": 4 * 3 * 2, "g": 4}  # 4 steps, 3 sub-steps of an all-real and an all-fake update


# 15 g_dropout
def test_g_dropout_follows_gs_hidden_blocks_and_stays_on_when_sampling(tiny_cfg):
    from dataclasses import replace

    from dcgan_cli.nets.layers import SamplingDropout
    from dcgan_cli.nets.models import build_generator, generate

    cfg = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, g_dropout=True, g_dropout_rate=0.5))
    g = build_generator(cfg, np.random.default_rng(0))
    dropouts = [layer.name for layer in g.layers if isinstance(layer, SamplingDropout)]
    assert dropouts == ["project_dropout", "up1_dropout"]
    names = [layer.name for layer in g.layers]
    assert names.index("project_dropout") == names.index("project_act") + 1
    z = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
    first, second = (keras.ops.convert_to_numpy(g(z, training=False)) for _ in range(2))
    assert not np.allclose(first, second)  # a new mask every call, sampling included
    hidden = keras.Model(g.input, g.get_layer("project_dropout").output)
    zeroed = (keras.ops.convert_to_numpy(hidden(z)) == 0).mean()
    assert 0.4 < zeroed < 0.85  # half dropped, plus the ReLU's zeros
    state = [keras.ops.convert_to_numpy(v.value).copy() for v in g.non_trainable_variables]
    assert np.array_equal(generate(g, z, cfg), generate(g, z, cfg))  # generate puts the generators' state back
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(v.value)) for a, v in zip(state, g.non_trainable_variables))


def test_g_dropout_both_loops_agree(tiny_overrides, tmp_path, plain_run):
    """(Its exact resume: test_every_new_switch_at_once_resumes_exactly.)"""
    on = ("hacks.g_dropout=true", "monitor.check_every=1")  # probed every step too
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", *on)
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)
    assert len(split) == len(weights(plain_run("train_on_batch"))) + 2  # the two dropout generators


def test_an_exported_generator_with_dropout_loads_in_plain_keras(tiny_cfg, tmp_path):
    from dataclasses import replace

    from dcgan_cli.nets import sampling
    from dcgan_cli.nets.models import build_generator

    cfg = replace(tiny_cfg, hacks=replace(tiny_cfg.hacks, g_dropout=True))
    sampling.export(build_generator(cfg, np.random.default_rng(0)), cfg, tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras")
    assert [type(layer).__name__ for layer in loaded.layers].count("Dropout") == 2
    assert "dropout" in sampling.export_info(cfg)


def test_every_new_switch_at_once_keeps_the_two_loops_equal(tiny_overrides, tmp_path):
    """All of hacks 12-20 but R1 (the compiled loop only) together: the two loops still do the same mathematics."""
    everything = ("hacks.ttur=true", "hacks.train_d_more=true", "hacks.instance_noise=true", "hacks.g_dropout=true",
                  "hacks.spectral_norm=true", "hacks.hinge_loss=true", "hacks.minibatch_std=true",
                  "hacks.diff_augment=true", "monitor.check_every=2")
    runs = {loop: run(tiny_overrides, tmp_path, loop, f"train.loop={loop}", *everything)
            for loop in ("train_on_batch", "compiled")}
    split, compiled = (weights(r) for r in runs.values())
    assert split.keys() == compiled.keys()
    assert all(np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6) for key in split)


def test_every_new_switch_at_once_resumes_exactly(tiny_overrides, tmp_path):
    everything = ("train.loop=compiled", "hacks.ttur=true", "hacks.train_d_more=true", "hacks.instance_noise=true",
                  "hacks.g_dropout=true", "hacks.spectral_norm=true", "hacks.hinge_loss=true",
                  "hacks.r1_penalty=true", "hacks.r1_every=2", "hacks.minibatch_std=true", "hacks.diff_augment=true")
    whole = run(tiny_overrides, tmp_path, "whole", *everything)
    crashed = crashed_copy(whole, after=2, to=tmp_path / "crashed")
    train.run(load_config(None, [*tiny_overrides, *everything]), run_dir=crashed, resume=True)
    whole, resumed = weights(whole), weights(crashed)
    assert [key for key in whole if not np.array_equal(whole[key], resumed[key])] == []
