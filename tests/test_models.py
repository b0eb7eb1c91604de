"""Generator and discriminator architectures over several image sizes, and how the hacks shape them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dcgan_cli.config import ConfigError, load_config
from dcgan_cli.nets import layers
from dcgan_cli.nets.layers import BatchNorm
from dcgan_cli.nets.models import base_size, build_discriminator, build_generator, build_models

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_OFF = [f"hacks.{name}=false" for name in (
    "strided_conv", "transposed_conv", "leaky_relu", "batch_norm", "gaussian_init", "adam", "scale_images",
    "gaussian_latent", "separate_batches", "label_smoothing", "noisy_labels")]


def rng():
    return np.random.default_rng(0)


def small(*overrides):
    return load_config(None, ["model.g_filters=4", "model.d_filters=4", "model.latent_dim=8", *overrides])


def output_shapes(model) -> dict[str, tuple]:
    return {layer.name: tuple(layer.output.shape) for layer in model.layers}


def by_type(model, name):
    return [layer for layer in model.layers if type(layer).__name__ == name]


@pytest.mark.parametrize("size, expected", [(64, (4, 4)), (28, (7, 2)), (16, (4, 2)), (10, (5, 1)), (8, (4, 1)),
                                            (32, (4, 3))])
def test_base_size(size, expected):
    assert base_size(size) == expected


def test_base_size_sets_the_depth_of_both_networks_and_must_leave_a_block():
    """model.base_size 8 at 64x64: G starts at 8x8 and D ends there, a block fewer each, the widths as before."""
    assert base_size(64, 8) == (8, 3) and base_size(32, 8) == (8, 2) and base_size(28, 8) == (7, 2)
    cfg = load_config(None, ["model.image_size=64", "model.channels=3", "model.base_size=8"])
    g, d = output_shapes(build_generator(cfg, rng())), output_shapes(build_discriminator(cfg, rng()))
    assert [g[name] for name in ("reshape", "up1", "up2", "to_image")] == [
        (None, 8, 8, 256), (None, 16, 16, 128), (None, 32, 32, 64), (None, 64, 64, 3)] and "up3" not in g
    assert [d[f"down{i}"] for i in range(1, 4)] == [(None, 32, 32, 64), (None, 16, 16, 128), (None, 8, 8, 256)]
    assert "down4" not in d
    with pytest.raises(ConfigError, match=r"model.base_size: G doubles its base at least once.*Received: 16"):
        load_config(None, ["model.image_size=16", "model.base_size=16"])


@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_over_image_sizes(size, channels):
    cfg = small(f"model.image_size={size}", f"model.channels={channels}")
    models = build_models(cfg, rng())
    assert models.g.output.shape == (None, size, size, channels)
    assert models.d.input.shape == (None, size, size, channels) and models.d.output.shape == (None, 1)
    assert models.gan.input.shape == (None, 8) and models.gan.output.shape == (None, 1)
    z = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    images = models.g.predict_on_batch(z)
    assert images.shape == (3, size, size, channels) and images.min() >= -1 and images.max() <= 1
    s = models.d.predict_on_batch(images)  # D's raw scores, its logits
    assert s.shape == (3, 1) and np.isfinite(s).all()


def test_filters_double_toward_the_base_and_are_capped():
    cfg = load_config(None, ["model.image_size=64", "model.channels=3"])
    g = output_shapes(build_generator(cfg, rng()))
    assert [g[name] for name in ("reshape", "up1", "up2", "up3", "to_image")] == [
        (None, 4, 4, 512), (None, 8, 8, 256), (None, 16, 16, 128), (None, 32, 32, 64), (None, 64, 64, 3)]
    d = output_shapes(build_discriminator(cfg, rng()))
    assert [d[f"down{i}"] for i in range(1, 5)] == [
        (None, 32, 32, 64), (None, 16, 16, 128), (None, 8, 8, 256), (None, 4, 4, 512)]
    capped = output_shapes(build_generator(load_config(None, ["model.image_size=64", "model.max_filters=128"]), rng()))
    assert capped["reshape"] == (None, 4, 4, 128) and capped["up3"] == (None, 32, 32, 64)


def test_dcgan64_config_is_the_papers_architecture():
    cfg = load_config(CONFIGS / "dcgan64.yaml")
    g = output_shapes(build_generator(cfg, rng()))
    assert [g[name] for name in ("reshape", "up1", "up2", "up3", "to_image")] == [
        (None, 4, 4, 1024), (None, 8, 8, 512), (None, 16, 16, 256), (None, 32, 32, 128), (None, 64, 64, 3)]
    d = output_shapes(build_discriminator(cfg, rng()))
    assert [d[f"down{i}"] for i in range(1, 5)] == [
        (None, 32, 32, 64), (None, 16, 16, 128), (None, 8, 8, 256), (None, 4, 4, 512)]
    assert build_generator(cfg, rng()).get_layer("up1").kernel_size == (5, 5)


def test_batch_norm_everywhere_but_d_input_and_g_output():
    cfg = small("model.image_size=32")
    g, d = build_generator(cfg, rng()), build_discriminator(cfg, rng())
    assert [layer.name for layer in by_type(g, "BatchNorm")] == ["project_bn", "up1_bn", "up2_bn"]
    assert [layer.name for layer in by_type(d, "BatchNorm")] == ["down2_bn", "down3_bn"]
    assert all(layer.momentum == 0.9 and layer.epsilon == 1e-5 for layer in by_type(d, "BatchNorm"))
    assert {layer.frozen_statistics for layer in by_type(d, "BatchNorm")} == {"batch"}
    moving = build_discriminator(small("model.image_size=32", "model.d_bn_in_g_update=moving"), rng())
    assert {layer.frozen_statistics for layer in by_type(moving, "BatchNorm")} == {"moving"}


def test_bias_only_where_no_batch_norm_follows():
    cfg = small("model.image_size=16")
    g, d = build_generator(cfg, rng()), build_discriminator(cfg, rng())
    assert {layer.name: layer.use_bias for layer in g.layers if hasattr(layer, "use_bias")} == {
        "project": False, "up1": False, "to_image": True}
    assert {layer.name: layer.use_bias for layer in d.layers if hasattr(layer, "use_bias")} == {
        "down1": True, "down2": False, "score": True}
    plain = build_discriminator(small("model.image_size=16", "hacks.batch_norm=false"), rng())
    assert all(layer.use_bias for layer in plain.layers if hasattr(layer, "use_bias"))


def test_activations_follow_the_paper():
    cfg = small("model.image_size=16")
    g, d = build_generator(cfg, rng()), build_discriminator(cfg, rng())
    assert len(by_type(g, "ReLU")) == 2 and not by_type(g, "LeakyReLU")
    assert len(by_type(d, "LeakyReLU")) == 2 and not by_type(d, "ReLU")
    assert g.get_layer("image").activation.__name__ == "tanh"
    assert d.layers[-1].name == "d_score" and d.layers[-1].activation.__name__ == "linear"  # the loss has the sigmoid
    leaky_g = build_generator(small("model.image_size=16", "model.g_activation=leaky_relu"), rng())
    assert len(by_type(leaky_g, "LeakyReLU")) == 2


def test_every_hack_off_builds_the_documented_alternatives():
    cfg = small("model.image_size=16", *ALL_OFF)
    g, d = build_generator(cfg, rng()), build_discriminator(cfg, rng())
    assert len(by_type(d, "MaxPooling2D")) == 2 and all(c.strides == (1, 1) for c in by_type(d, "Conv2D"))
    assert len(by_type(g, "UpSampling2D")) == 2 and not by_type(g, "Conv2DTranspose")
    assert not by_type(g, "BatchNorm") and not by_type(d, "BatchNorm") and not by_type(d, "LeakyReLU")
    assert g.get_layer("image").activation.__name__ == "sigmoid"
    images = g.predict_on_batch(np.random.default_rng(1).uniform(-1, 1, (4, 8)).astype(np.float32))
    assert images.min() >= 0 and images.max() <= 1
    assert isinstance(by_type(build_discriminator(small(), rng()), "BatchNorm")[0], BatchNorm)


def test_same_seed_same_weights_other_seed_other_weights():
    cfg = small()
    first, second = build_generator(cfg, rng()), build_generator(cfg, rng())
    other = build_generator(cfg, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="only TensorFlow fuses BatchNorm; elsewhere the layer is Keras' own")
@pytest.mark.parametrize("affine", [True, False])
def test_the_fused_batch_norm_computes_what_keras_batch_normalization_computes(affine, monkeypatch):
    """TensorFlow's training-mode BatchNorm runs as one fused op (backend.batch_statistics_norm): its output, its
    gradients and its moving statistics are Keras' own, trainable or frozen with batch statistics."""
    import keras

    from dcgan_cli import backend

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.normal(2.0, 3.0, (6, 5, 5, 4)).astype(np.float32))
    cotangent = keras.ops.convert_to_tensor(rng.normal(size=(6, 5, 5, 4)).astype(np.float32))
    gamma, beta = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    found = {}
    for fused in (True, False):
        if not fused:  # Keras' own moments and batch_normalization (and ours, frozen with batch statistics)
            monkeypatch.setattr(layers, "fuses_batch_norm", lambda inputs, axis: False)
        layer = BatchNorm(momentum=0.9, epsilon=1e-5, center=affine, scale=affine)
        layer.build(x.shape)
        if affine:
            layer.gamma.assign(gamma)
            layer.beta.assign(beta)
        weights = layer.trainable_variables

        def loss(images):
            return keras.ops.sum(layer(images, training=True) * cotangent), None

        out, _, grad = backend.input_gradient(loss, x)
        found[fused] = [out, grad, layer.moving_mean.value, layer.moving_variance.value]
        layer.trainable = False  # frozen with batch statistics: the same output, no moving update
        frozen = layer(x, training=True)
        found[fused] += [frozen, layer.moving_mean.value]
        assert len(weights) == (2 if affine else 0)
    assert backend.fuses_batch_norm(x, -1)
    for with_fused, with_keras in zip(found[True], found[False]):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(with_fused), keras.ops.convert_to_numpy(with_keras),
                                   rtol=1e-5, atol=1e-5)
