"""The moving average of G's weights (train.ema_decay): its warmed-up decay, one blending step, and BatchNorm
statistics of the averaged G's own."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dcgan_cli.config import Config
from dcgan_cli.nets import hacks
from dcgan_cli.nets.models import Classes, Models, g_inputs

EMA_CALIBRATION = 512  # latents whose batch statistics become the moving average's BatchNorm statistics
EMA_STREAM = 2  # their numpy generator is seeded with [train.seed, EMA_STREAM] (scoring's latents use 1)


def ema_decay_at(decay: float, step):
    """The average's decay at training step `step` (an int32 tensor): min(decay, (1 + step) / (10 + step)), as
    TensorFlow's ExponentialMovingAverage warms up, so that the random initial weights are forgotten within the
    first hundred steps instead of weighing decay^step. Float32 scalar."""
    step = ops.cast(step, "float32")
    return ops.minimum(ops.convert_to_tensor(decay, "float32"), (1.0 + step) / (10.0 + step))


def ema_blend(average, value, decay):
    """One step of an exponential moving average: decay * average + (1 - decay) * value."""
    return average * decay + value * (1.0 - decay)


def ema_values(averages: list, values: list, *, decay: float, step) -> list:
    """The averages after training step `step`: each blended with G's value at ema_decay_at(decay, step)."""
    at = ema_decay_at(decay, step)
    return [ema_blend(average, value, at) for average, value in zip(averages, values)]


def assign_ema(models: Models, *, decay: float, step) -> None:
    """Move g_ema's weights to ema_values in place (TensorFlow and torch, inside or outside a compiled call)."""
    averages = models.g_ema.trainable_variables
    new = ema_values([a.value for a in averages], [v.value for v in models.g.trainable_variables], decay=decay,
                     step=step)
    for average, value in zip(averages, new):
        average.assign(value)


def calibrate_ema(g_ema: keras.Model, cfg: Config, classes: Classes | None = None) -> None:
    """Give the averaged G BatchNorm statistics that belong to its own weights: each BN layer's moving mean and
    variance become its batch statistics on EMA_CALIBRATION fixed latents in one training-mode pass. Averaging G's
    moving statistics instead pairs averaged weights with statistics of other weights (measured: FD 258 instead of
    19 on the digits at step 1000 with decay 0.999)."""
    rng = np.random.default_rng([cfg.train.seed, EMA_STREAM])
    z = hacks.sample_latent(rng, EMA_CALIBRATION, cfg.model.latent_dim, hacks=cfg.hacks)
    norms = [layer for layer in g_ema.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    try:
        g_ema(g_inputs(z, None if classes is None else classes.balanced(EMA_CALIBRATION)), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
