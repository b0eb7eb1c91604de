"""Hacks 17, 18 and 24: D's loss and what is added to it. The hinge loss (17), the R1 penalty on real images
(18), the LeCam regulariser (24)."""

from __future__ import annotations

import keras
from keras import ops

from dcgan_cli.config import HacksConfig
from dcgan_cli.nets import losses
from dcgan_cli.nets.hacks.memory import class_loss


def objective(hacks: HacksConfig) -> losses.Objective:
    """Hack 17 (Lim & Ye 2017, "Geometric GAN"; SNGAN, BigGAN): the hinge loss on D's raw scores.

    on:  D: y max(0, 1 - s) + (1 - y) max(0, 1 + s), G: -s                         (losses.HINGE)
    off: binary cross-entropy of sigmoid(s) for both, as softplus(s) - y s           (losses.CROSS_ENTROPY)
    Either way on D's raw score s, its last layer: D's probability is sigmoid(s) (losses.probability).
    """
    return lecam(class_loss(losses.HINGE if hacks.hinge_loss else losses.CROSS_ENTROPY, hacks=hacks), hacks=hacks)


def r1_penalty(gradient, is_real, step, *, hacks: HacksConfig):
    """Hack 18 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"): the R1 penalty
    on D's gradient at the real images, added to D's loss; lazily (StyleGAN2) every r1_every steps at r1_every
    times the weight. `gradient` is d sum(D's raw scores) / d images (N, H, W, C), `is_real` (N,) marks the real
    ones, `step` the training step. Scalar.

    on:  r1_gamma / 2 * mean over real images of ||gradient||^2, times r1_every on steps divisible by it, else 0
    off: 0 (and no gradient is taken: r1_due is False)
    """
    if not hacks.r1_penalty:
        return 0.0
    dtype = keras.backend.result_type(gradient.dtype, "float32")  # at least float32 (mixed precision)
    squares = ops.sum(ops.reshape(ops.square(ops.cast(gradient, dtype)), (gradient.shape[0], -1)), axis=1)
    real = ops.cast(is_real, dtype)
    mean = ops.sum(squares * real) / ops.maximum(ops.sum(real), 1.0)
    return hacks.r1_gamma / 2.0 * hacks.r1_every * mean


def r1_due(step, *, hacks: HacksConfig):
    """Whether hack 18's penalty applies at `step` (a bool tensor): on steps divisible by r1_every."""
    return ops.equal(ops.mod(step, hacks.r1_every), 0)


def lecam(objective: losses.Objective, *, hacks: HacksConfig) -> losses.Objective:
    """Hack 24 (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data"): D's raw
    scores on real images pulled toward the moving average of its scores on fakes, and the other way round, so
    D's outputs cannot drift apart on a training set it memorises. The averages (adapt) come in D's targets.

    on:  D's loss + lecam_weight * (s - fake_average)^2 on reals, (s - real_average)^2 on fakes   (losses.lecam)
    off: D's loss unchanged
    """
    if not hacks.lecam:
        return objective
    return losses.lecam(objective, weight=hacks.lecam_weight)
