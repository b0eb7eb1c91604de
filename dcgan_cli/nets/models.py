"""Generator, discriminator and the combined GAN model, built and compiled from the config."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from dcgan_cli.nets import hacks, losses
from dcgan_cli.config import Config
from dcgan_cli.nets.layers import AUGMENT_DRAWS, DiffAugment


@dataclass(frozen=True)
class Models:
    """The models of a run; `gan` is z -> D(G(z)) and shares its layers with `g` and `d`; `g_ema`, with
    train.ema_decay, is a second G holding the moving average of G's variables."""

    g: keras.Model
    d: keras.Model
    gan: keras.Model
    g_ema: keras.Model | None = None

    @property
    def sampler(self) -> keras.Model:
        """The G that grids and scores use: the moving average when kept, else G itself."""
        return self.g_ema if self.g_ema is not None else self.g


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


def calibrate_ema(g_ema: keras.Model, cfg: Config) -> None:
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
        g_ema(z, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def base_size(image_size: int) -> tuple[int, int]:
    """G's base side and the number of doublings to reach image_size: halve while even and above 4.

    64 -> (4, 4), 28 -> (7, 2), 16 -> (4, 2), 10 -> (5, 1).
    """
    side, doublings = image_size, 0
    while side % 2 == 0 and side > 4:
        side, doublings = side // 2, doublings + 1
    return side, doublings


def _filters(start: int, cap: int, count: int) -> list[int]:
    """start, 2*start, 4*start, ... (count values), each capped at cap."""
    return [min(start * 2**i, cap) for i in range(count)]


def build_generator(cfg: Config, rng: np.random.Generator) -> keras.Model:
    """G: z (N, latent_dim) -> Dense -> (base, base) -> one upsampling block per doubling -> image."""
    m, h = cfg.model, cfg.hacks
    base, doublings = base_size(m.image_size)
    widths = _filters(m.g_filters, m.max_filters, doublings)[::-1]  # widths[0] at the base, widest
    leaky = m.g_activation == "leaky_relu"
    # G is never frozen inside a training call, so its BN keeps Keras' own frozen behaviour.
    norm = dict(hacks=h, momentum=m.bn_momentum, epsilon=m.bn_epsilon, frozen_statistics="moving")
    conv = dict(hacks=h, kernel_size=m.kernel_size)

    z = keras.Input((m.latent_dim,), name="z")  # (N, latent_dim)
    x = layers.Dense(base * base * widths[0], use_bias=hacks.conv_bias(h),
                     kernel_initializer=hacks.kernel_initializer(h, rng), name="project")(z)  # (N, base*base*w0)
    x = layers.Reshape((base, base, widths[0]), name="reshape")(x)  # (N, base, base, w0)
    x = hacks.batch_norm(x, name="project_bn", **norm)  # (N, base, base, w0)
    x = hacks.activation(x, hacks=h, leaky=leaky, name="project_act")  # (N, base, base, w0)
    x = hacks.g_dropout(x, hacks=h, rng=rng, name="project_dropout")  # same shape
    for block, width in enumerate(widths[1:], start=1):
        x = hacks.upsample(x, filters=width, use_bias=hacks.conv_bias(h), initializer=hacks.kernel_initializer(h, rng),
                           name=f"up{block}", **conv)  # (N, base*2^block, base*2^block, width)
        x = hacks.batch_norm(x, name=f"up{block}_bn", **norm)  # same shape
        x = hacks.activation(x, hacks=h, leaky=leaky, name=f"up{block}_act")  # same shape
        x = hacks.g_dropout(x, hacks=h, rng=rng, name=f"up{block}_dropout")  # same shape
    x = hacks.upsample(x, filters=m.channels, use_bias=True, initializer=hacks.kernel_initializer(h, rng),
                       name="to_image", **conv)  # (N, image_size, image_size, channels)
    image = layers.Activation(hacks.output_activation(h), dtype="float32", name="image")(x)  # same, model range
    return keras.Model(z, image, name="generator")


def build_discriminator(cfg: Config, rng: np.random.Generator) -> keras.Model:
    """D: image -> one strided block per doubling (mirroring G) -> Flatten -> Dense -> sigmoid p(real) (N, 1), or
    the raw score with the hinge loss (hack 17)."""
    m, h = cfg.model, cfg.hacks
    base, doublings = base_size(m.image_size)
    widths = _filters(m.d_filters, m.max_filters, doublings)
    norm = dict(hacks=h, momentum=m.bn_momentum, epsilon=m.bn_epsilon, frozen_statistics=m.d_bn_in_g_update)

    image = keras.Input((m.image_size, m.image_size, m.channels), name="image")  # (N, size, size, channels)
    x = image
    for block, width in enumerate(widths, start=1):
        first = block == 1
        x = hacks.downsample(x, filters=width, hacks=h, kernel_size=m.kernel_size,
                             use_bias=first or hacks.conv_bias(h), initializer=hacks.kernel_initializer(h, rng),
                             name=f"down{block}")  # (N, size/2^block, size/2^block, width)
        if not first:  # no batch norm on D's input layer (DCGAN)
            x = hacks.batch_norm(x, name=f"down{block}_bn", **norm)  # same shape
        x = hacks.activation(x, hacks=h, leaky=True, name=f"down{block}_act")  # same shape
    x = hacks.minibatch_std(x, hacks=h, name="minibatch_std")  # (N, base, base, widths[-1] (+ 1))
    x = layers.Flatten(name="flatten")(x)  # (N, base*base*(widths[-1] (+ 1)))
    score = layers.Dense(1, kernel_initializer=hacks.kernel_initializer(h, rng), name="score")
    x = hacks.spectral_norm(score, hacks=h)(x)  # (N, 1)
    output = hacks.d_output(x, hacks=h)  # (N, 1): p(real) in (0, 1), or the raw score for the hinge loss
    return keras.Model(image, output, name="discriminator")


def build_models(cfg: Config, rng: np.random.Generator) -> Models:
    """Build G, D and the combined model, and compile D and the GAN, each with its own optimizer (hack 6)."""
    g = build_generator(cfg, rng)
    d = build_discriminator(cfg, rng)
    z = keras.Input((cfg.model.latent_dim,), name="z")  # (N, latent_dim)
    inputs, image = [z], g(z)  # (N, size, size, channels)
    if cfg.hacks.diff_augment:  # hack 20: the G update's D input is augmented by the step's draws, an input here
        draws = keras.Input((AUGMENT_DRAWS,), name="augment_draws")  # (N, 7)
        inputs, image = [*inputs, draws], DiffAugment(name="augmented")([image, draws])  # same shape
    if cfg.hacks.instance_noise:  # hack 14: the G update's D input gets the step's noise, an input here
        noise = keras.Input(g.output.shape[1:], name="d_input_noise")  # (N, size, size, channels)
        inputs, image = [*inputs, noise], layers.Add(name="noisy")([image, noise])  # same shape
    gan = keras.Model(inputs if len(inputs) > 1 else z, d(image), name="gan")  # (N, 1): D's belief G's are real
    objective = hacks.objective(cfg.hacks)
    d.compile(optimizer=hacks.optimizer(cfg.hacks, network="d"), loss=objective.d_loss,
              metrics=[losses.DMetrics(objective)])
    gan.compile(optimizer=hacks.optimizer(cfg.hacks, network="g"), loss=objective.g_loss)
    g_ema = None
    if cfg.train.ema_decay > 0:
        # Its own initializer seeds, so `rng` draws what it draws without the average; then G's values.
        g_ema = build_generator(cfg, np.random.default_rng(0))
        g_ema.set_weights(g.get_weights())
    return Models(g=g, d=d, gan=gan, g_ema=g_ema)



def build_optimizers(models: Models) -> None:
    """Create both optimizers' variables now (D's over D's weights, G's over the GAN's trainable G weights), so
    saved optimizer state has somewhere to go; Keras would otherwise build them at the first update."""
    models.d.trainable = True
    if not models.d.optimizer.built:
        models.d.optimizer.build(models.d.trainable_variables)
    models.d.trainable = False
    if not models.gan.optimizer.built:
        models.gan.optimizer.build(models.gan.trainable_variables)


def saved_variables(model: keras.Model) -> list:
    """What a checkpoint keeps of a model: its weights, then the states of its layers' random generators (hack
    15's dropout), so a resumed run draws the masks the uninterrupted one would."""
    weights = list(model.weights)
    known = {id(v) for v in weights}
    return weights + [v for v in model.non_trainable_variables if id(v) not in known]


def generate(g: keras.Model, z: np.ndarray, cfg: Config) -> np.ndarray:
    """G in inference mode (BatchNorm moving statistics) on latents z (N, latent_dim): uint8 images (N, H, W, C).
    The states of G's random generators (hack 15) are put back afterwards: sampling never changes training."""
    generators = saved_variables(g)[len(g.weights):]
    states = [ops.copy(v.value) for v in generators]
    try:
        return hacks.unscale_images(g.predict_on_batch(z), hacks=cfg.hacks)
    finally:
        for variable, state in zip(generators, states):
            variable.assign(state)


def summary(model: keras.Model, *, width: int = 100) -> str:
    """Keras' layer table (names, output shapes, parameter counts) as text, all columns present even when
    stdout is not a terminal (rich would otherwise cut the table at 80 columns)."""
    lines: list[str] = []
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width + 4)
    try:
        model.summary(line_length=width, print_fn=lambda text, **_: lines.append(text))
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "".join(lines)
