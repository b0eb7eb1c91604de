"""D's losses on its raw score: the cross-entropy in its stable form, which keeps G's gradient when D is sure of
every fake, and the probability that D(x) and D(G(z)) show."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from dcgan_cli import backend
from dcgan_cli.nets import losses
from dcgan_cli.nets.gradients import global_norm
from dcgan_cli.nets.models import build_models

LABELS = [0.0, 0.05, 0.3, 0.7, 0.95, 1.0, 1.2]  # hard, flipped-smoothed, one-sided smoothing's range and beyond 1


def clipped_crossentropy(y, s):
    """The formula the losses had before they moved onto D's logits, kept here only as the reference: D's sigmoid,
    clipped to [1e-7, 1 - 1e-7] as Keras' binary_crossentropy clips probabilities, then the logarithms."""
    p = ops.clip(ops.sigmoid(ops.cast(s, "float32")), 1e-7, 1.0 - 1e-7)
    y = ops.convert_to_tensor(y, "float32")
    return -ops.mean(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p), axis=-1)


def numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


@pytest.mark.parametrize("label", LABELS)
def test_the_logit_loss_equals_the_clipped_form_where_the_clip_is_inactive(label):
    s = np.linspace(-9.9, 9.9, 199, dtype=np.float32)[:, None]  # |s| < 10: sigmoid(s) within [4.5e-5, 1 - 4.5e-5]
    y = np.full_like(s, label)
    new, old = numpy(losses.binary_crossentropy(y, s)), numpy(clipped_crossentropy(y, s))
    exact = np.logaddexp(0.0, s[:, 0].astype(np.float64)) - label * s[:, 0]  # softplus(s) - y s in float64
    np.testing.assert_allclose(new, exact, rtol=1e-5, atol=1e-6)
    # float32's 1 - sigmoid(s) near s = 10 keeps 3 digits: the clipped form is the less exact of the two there
    np.testing.assert_allclose(new, old, rtol=2e-3, atol=2e-3)
    targets = np.concatenate([y, np.ones_like(y)], axis=1)  # (label, source)
    np.testing.assert_allclose(numpy(losses.d_loss(targets, s)), new, rtol=1e-6)


def test_the_logit_loss_is_finite_for_every_score_and_label():
    s = np.array([[-1e4], [-100.0], [-30.0], [0.0], [30.0], [100.0], [1e4]], np.float32)
    for label in LABELS:
        found = numpy(losses.binary_crossentropy(np.full_like(s, label), s))
        assert np.isfinite(found).all(), (label, found)
    np.testing.assert_allclose(numpy(losses.g_loss(np.ones_like(s), s))[:3], [1e4, 100.0, 30.0], rtol=1e-6)


def test_g_loss_keeps_a_gradient_of_minus_one_where_the_clipped_form_has_none():
    s = ops.convert_to_tensor(np.full((4, 1), -30.0, np.float32))  # D sure that every fake is fake
    ones = np.ones((4, 1), np.float32)
    _, _, new = backend.input_gradient(lambda x: (ops.sum(losses.g_loss(ones, x)), None), s)
    _, _, old = backend.input_gradient(lambda x: (ops.sum(clipped_crossentropy(ones, x)), None), s)
    np.testing.assert_allclose(numpy(new), -1.0, rtol=1e-6)
    assert (numpy(old) == 0.0).all()


def test_gs_gradient_survives_a_d_sure_of_every_fake_and_vanishes_under_the_clipped_form(tiny_cfg):
    models = build_models(tiny_cfg, np.random.default_rng(0))
    g, d = models.g, models.d
    z = ops.convert_to_tensor(np.random.default_rng(1).standard_normal((8, tiny_cfg.model.latent_dim),
                                                                       dtype=np.float32))
    g_ntv = [v.value for v in g.non_trainable_variables]
    d_tv, d_ntv = [v.value for v in d.trainable_variables], [v.value for v in d.non_trainable_variables]

    def scores(g_values, d_values=d_tv):
        fakes, _ = g.stateless_call(g_values, g_ntv, z, training=True)
        return d.stateless_call(d_values, d_ntv, fakes, training=True)[0]

    g_tv = [v.value for v in g.trainable_variables]
    bias = next(i for i, v in enumerate(d.trainable_variables) if v.path.endswith("score/bias"))
    shift = -30.0 - float(numpy(scores(g_tv)).mean())
    d_tv = [value + shift if i == bias else value for i, value in enumerate(d_tv)]  # every fake scores -30
    assert np.all(np.abs(numpy(scores(g_tv, d_tv)) + 30.0) < 1.0)
    ones = np.ones((8, 1), np.float32)

    def norm(loss) -> float:
        _, _, grads = backend.input_gradient(lambda values: (ops.mean(loss(ones, scores(values, d_tv))), None), g_tv)
        return float(numpy(global_norm(grads)))

    new, old = norm(losses.g_loss), norm(clipped_crossentropy)
    assert np.isfinite(new) and new > 1e-3, "G learns from a D that is sure"
    assert old == 0.0, "the clipped formula gives G nothing, for ever"


def test_ds_probability_is_the_sigmoid_of_its_score_and_the_metrics_show_it():
    s = np.array([[-30.0], [0.0], [2.0], [-1.0]], np.float32)
    np.testing.assert_allclose(numpy(losses.probability(s)), 1 / (1 + np.exp(-s.astype(np.float64))), rtol=1e-6)
    y = losses.d_targets(np.array([[0.9], [1.0], [0.0], [0.0]], np.float32), np.array([True, True, False, False]))
    found = {key: float(value) for key, value in losses.CROSS_ENTROPY.d_metrics(y, s).items()}
    assert found["d_real_mean"] == pytest.approx((1e-13 + 0.5) / 2, abs=1e-7)
    assert found["d_fake_mean"] == pytest.approx((1 / (1 + np.exp(-2.0)) + 1 / (1 + np.exp(1.0))) / 2, rel=1e-6)
    assert found["d_real_score"] == pytest.approx(-15.0) and found["d_fake_score"] == pytest.approx(0.5)
    assert found["d_loss_real"] == pytest.approx((0.9 * 30 + np.log1p(np.exp(-30.0)) + np.log(2.0)) / 2, rel=1e-5)


def test_the_models_d_ends_in_its_raw_score(tiny_cfg):
    d = build_models(tiny_cfg, np.random.default_rng(0)).d
    assert d.layers[-1].name == "d_score" and d.layers[-1].activation is keras.activations.linear
