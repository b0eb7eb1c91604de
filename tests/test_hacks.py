"""Each of the eleven hacks, on and off: the layers, values and draws show the documented difference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from dcgan_cli.nets import hacks
from dcgan_cli.config import HacksConfig
from dcgan_cli.nets.layers import BatchNorm
from dcgan_cli.nets.models import summary

ON = HacksConfig()


def off(**changes) -> HacksConfig:
    return HacksConfig(**changes)


def single_layer_model(build, shape=(64, 64, 3)) -> keras.Model:
    x = keras.Input(shape)
    return keras.Model(x, build(x))


def summary_rows(model: keras.Model) -> dict[str, tuple[str, str]]:
    """The printed summary table as {"name (Type)": ("(None, ...)", "1,792")}."""
    rows = {}
    for line in summary(model).splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def kinds(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers[1:]]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def conv_args(h: HacksConfig, **extra):
    return dict(filters=64, hacks=h, kernel_size=3, use_bias=True, initializer=hacks.kernel_initializer(h, rng()),
                name="conv", **extra)


# 1 strided_conv
def test_seed_example_strided_conv_matches_its_printed_summary():
    model = single_layer_model(lambda x: hacks.downsample(x, **conv_args(ON)))
    assert kinds(model) == ["Conv2D"] and model.layers[1].strides == (2, 2)
    assert model.output.shape == (None, 32, 32, 64) and model.count_params() == 1792
    assert summary_rows(model)["conv (Conv2D)"] == ("(None, 32, 32, 64)", "1,792")


def test_strided_conv_off_uses_stride_one_and_pooling():
    model = single_layer_model(lambda x: hacks.downsample(x, **conv_args(off(strided_conv=False))))
    assert kinds(model) == ["Conv2D", "MaxPooling2D"] and model.layers[1].strides == (1, 1)
    assert model.output.shape == (None, 32, 32, 64) and model.count_params() == 1792


# 2 transposed_conv
def test_seed_example_transposed_conv_matches_its_printed_summary():
    model = single_layer_model(lambda x: hacks.upsample(x, **dict(conv_args(ON), kernel_size=4)))
    assert kinds(model) == ["Conv2DTranspose"] and model.layers[1].strides == (2, 2)
    assert model.output.shape == (None, 128, 128, 64) and model.count_params() == 3136
    assert summary_rows(model)["conv (Conv2DTranspose)"] == ("(None, 128, 128, 64)", "3,136")


def test_transposed_conv_off_uses_upsampling_and_conv():
    model = single_layer_model(lambda x: hacks.upsample(x, **dict(conv_args(off(transposed_conv=False)),
                                                                 kernel_size=4)))
    assert kinds(model) == ["UpSampling2D", "Conv2D"] and model.layers[2].strides == (1, 1)
    assert model.output.shape == (None, 128, 128, 64)


# 3 leaky_relu
@pytest.mark.parametrize("h, leaky, kind, at_minus_one", [
    (ON, True, "LeakyReLU", -0.2),
    (off(leaky_slope=0.1), True, "LeakyReLU", -0.1),
    (ON, False, "ReLU", 0.0),
    (off(leaky_relu=False), True, "ReLU", 0.0),
])
def test_leaky_relu_switch(h, leaky, kind, at_minus_one):
    model = single_layer_model(lambda x: hacks.activation(x, hacks=h, leaky=leaky, name="act"), shape=(1,))
    assert kinds(model) == [kind]
    assert model.predict_on_batch(np.array([[-1.0]], np.float32))[0, 0] == pytest.approx(at_minus_one)


def test_seed_example_conv_leaky_relu():
    def build(x):
        return hacks.activation(hacks.downsample(x, **conv_args(ON)), hacks=ON, leaky=True, name="act")
    model = single_layer_model(build)
    assert kinds(model) == ["Conv2D", "LeakyReLU"] and model.count_params() == 1792


# 4 batch_norm
def test_seed_example_batch_norm_between_conv_and_activation():
    def build(x):
        x = hacks.downsample(x, **conv_args(ON))
        x = hacks.batch_norm(x, hacks=ON, momentum=0.9, epsilon=1e-5, frozen_statistics="batch", name="bn")
        return hacks.activation(x, hacks=ON, leaky=True, name="act")
    model = single_layer_model(build)
    assert kinds(model) == ["Conv2D", "BatchNorm", "LeakyReLU"]
    assert isinstance(model.layers[2], keras.layers.BatchNormalization)
    assert model.layers[2].count_params() == 256 and model.layers[2].momentum == 0.9
    assert summary_rows(model)["bn (BatchNorm)"] == ("(None, 32, 32, 64)", "256")


def test_batch_norm_off_adds_no_layer_and_keeps_conv_bias():
    h = off(batch_norm=False)
    model = single_layer_model(lambda x: hacks.batch_norm(hacks.downsample(x, **conv_args(h)), hacks=h, momentum=0.9,
                                                          epsilon=1e-5, frozen_statistics="batch", name="bn"))
    assert kinds(model) == ["Conv2D"]
    assert hacks.conv_bias(h) is True and hacks.conv_bias(ON) is False


# 5 gaussian_init
def test_gaussian_init_has_the_configured_stddev_and_differs_per_layer():
    first = keras.ops.convert_to_numpy(hacks.kernel_initializer(ON, rng())((200, 200)))
    second = keras.ops.convert_to_numpy(hacks.kernel_initializer(ON, rng())((200, 200)))
    assert abs(first.mean()) < 1e-3 and first.std() == pytest.approx(0.02, rel=0.02)
    generator = rng()
    a, b = (keras.ops.convert_to_numpy(hacks.kernel_initializer(ON, generator)((50, 50))) for _ in range(2))
    assert np.array_equal(first, second) and not np.array_equal(a, b)
    wide = keras.ops.convert_to_numpy(hacks.kernel_initializer(off(init_stddev=0.1), rng())((200, 200)))
    assert wide.std() == pytest.approx(0.1, rel=0.02)


def test_gaussian_init_off_is_glorot_uniform():
    init = hacks.kernel_initializer(off(gaussian_init=False), rng())
    assert isinstance(init, keras.initializers.GlorotUniform)
    values = keras.ops.convert_to_numpy(init((200, 600)))
    limit = np.sqrt(6 / (200 + 600))
    assert values.max() <= limit and values.min() >= -limit and values.std() == pytest.approx(limit / np.sqrt(3),
                                                                                               rel=0.02)


# 6 adam
def test_adam_hyper_parameters():
    on = hacks.optimizer(ON, network="d")
    assert float(on.learning_rate) == pytest.approx(2e-4) and on.beta_1 == 0.5
    default = hacks.optimizer(off(adam=False), network="g")
    assert float(default.learning_rate) == pytest.approx(1e-3) and default.beta_1 == 0.9
    tuned = hacks.optimizer(off(learning_rate=1e-4, beta_1=0.3), network="d")
    assert float(tuned.learning_rate) == pytest.approx(1e-4) and tuned.beta_1 == 0.3


# 7 scale_images
def test_scale_images_range_and_inverse():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    on = hacks.scale_images(pixels, hacks=ON)
    assert on.dtype == np.float32 and on.min() == -1.0 and on.max() == 1.0
    plain = hacks.scale_images(pixels, hacks=off(scale_images=False))
    assert plain.min() == 0.0 and plain.max() == 1.0
    assert np.array_equal(hacks.unscale_images(on, hacks=ON), pixels)
    assert np.array_equal(hacks.unscale_images(plain, hacks=off(scale_images=False)), pixels)
    assert hacks.unscale_images(np.array([-3.0, 3.0]), hacks=ON).tolist() == [0, 255]
    assert hacks.output_activation(ON) == "tanh"
    assert hacks.output_activation(off(scale_images=False)) == "sigmoid"


def numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


class Device:
    """The steps' draws (draws.StepRandom) as a Generator-like source of seeds: the hacks take either."""

    def __call__(self, seed: int = 0):
        from dcgan_cli.state import draws
        return draws.StepRandom(keras.random.SeedGenerator(0), seed, 3, slot=1)

    def __repr__(self) -> str:
        return "device"


# The hacks draw from a NumPy Generator (latents of grids and scores) or a step's device draws (training steps).
SOURCES = pytest.mark.parametrize("source", [rng, Device()], ids=["host", "device"])


# 8 gaussian_latent
@SOURCES
def test_latent_distribution(source):
    z = numpy(hacks.sample_latent(source(), 20000, 16, hacks=ON))
    assert z.shape == (20000, 16) and z.dtype == np.float32
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01) and np.abs(z).max() > 3
    u = numpy(hacks.sample_latent(source(), 20000, 16, hacks=off(gaussian_latent=False)))
    assert u.dtype == np.float32 and u.min() >= -1 and u.max() <= 1
    assert u.std() == pytest.approx(1 / np.sqrt(3), abs=0.01)


# 9 separate_batches
@SOURCES
def test_separate_batches_gives_all_real_then_all_fake(source):
    real_part, fake_part = map(numpy, hacks.d_batch_plan(8, source(), hacks=ON))
    assert real_part.tolist() == list(range(8)) and fake_part.tolist() == list(range(8, 16))


@SOURCES
def test_separate_batches_off_gives_one_shuffled_mixed_batch(source):
    (mixed,) = map(numpy, hacks.d_batch_plan(32, source(), hacks=off(separate_batches=False)))
    assert sorted(mixed.tolist()) == list(range(64)) and (mixed < 32).sum() == 32
    assert not (mixed[:32] < 32).all(), "shuffled, not real-then-fake"
    assert not np.array_equal(mixed, numpy(hacks.d_batch_plan(32, source(1), hacks=off(separate_batches=False))[0]))


# 10 label_smoothing
@SOURCES
def test_label_smoothing_one_sided_by_default(source):
    is_real = np.arange(100000) % 2 == 0
    labels = numpy(hacks.smooth_labels(is_real, source(), hacks=ON))
    assert labels.shape == (100000, 1) and labels.dtype == np.float32
    real, fake = labels[is_real, 0], labels[~is_real, 0]
    assert real.min() >= 0.7 and real.max() <= 1.2 and real.mean() == pytest.approx(0.95, abs=0.005)
    assert real.std() == pytest.approx(0.5 / np.sqrt(12), abs=0.005)
    assert (fake == 0).all()


@SOURCES
def test_label_smoothing_two_sided_and_off(source):
    is_real = np.arange(100000) % 2 == 0
    fake = numpy(hacks.smooth_labels(is_real, source(), hacks=off(smooth_fake=True)))[~is_real, 0]
    assert fake.min() >= 0.0 and fake.max() <= 0.3 and fake.mean() == pytest.approx(0.15, abs=0.005)
    hard = numpy(hacks.smooth_labels(is_real, source(), hacks=off(label_smoothing=False)))[:, 0]
    assert np.array_equal(hard, is_real.astype(np.float32))


# 11 noisy_labels
@SOURCES
def test_noisy_labels_flip_each_label_independently_at_the_rate(source):
    is_real = np.arange(200000) % 2 == 0
    flipped = numpy(hacks.flip_labels(is_real, source(), hacks=ON)) != is_real
    assert flipped.mean() == pytest.approx(0.05, abs=0.002)
    assert flipped[is_real].mean() == pytest.approx(0.05, abs=0.003)
    assert flipped[~is_real].mean() == pytest.approx(0.05, abs=0.003)
    many = numpy(hacks.flip_labels(is_real, source(), hacks=off(flip_probability=0.3))) != is_real
    assert many.mean() == pytest.approx(0.3, abs=0.005)


@SOURCES
def test_noisy_labels_off_leaves_labels_unchanged(source):
    is_real = np.arange(1000) % 3 == 0
    assert np.array_equal(numpy(hacks.flip_labels(is_real, source(), hacks=off(noisy_labels=False))), is_real)


def test_batch_norm_layer_is_keras_batch_normalization():
    layer = hacks.batch_norm(keras.Input((4, 4, 2)), hacks=ON, momentum=0.8, epsilon=1e-3, frozen_statistics="moving",
                             name="bn")
    bn = layer._keras_history.operation
    assert isinstance(bn, BatchNorm) and isinstance(bn, layers.BatchNormalization)
    assert (bn.momentum, bn.epsilon, bn.frozen_statistics) == (0.8, 1e-3, "moving")


def test_the_fake_label_mean_is_the_share_of_flipped_fakes_at_the_real_labels_mean():
    assert hacks.fake_label_mean(HacksConfig()) == pytest.approx(0.05 * 0.95)
    assert hacks.fake_label_mean(HacksConfig(noisy_labels=False)) == 0.0
    assert hacks.fake_label_mean(HacksConfig(label_smoothing=False)) == pytest.approx(0.05)
    assert hacks.fake_label_mean(HacksConfig(smooth_fake=True, flip_probability=0.1)) == pytest.approx(
        0.1 * 0.95 + 0.9 * 0.15)
