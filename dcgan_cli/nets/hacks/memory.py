"""Hacks 21 and 22: what G and D are told and what D remembers. The images' classes (21, class conditioning:
G's input or its BatchNorm, D's projection or auxiliary head, their losses) and past fakes (22, experience
replay)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from dcgan_cli.config import HacksConfig
from dcgan_cli.nets import losses
from dcgan_cli.nets.hacks.architecture import kernel_initializer, spectral_norm


def class_input(z, classes, *, hacks: HacksConfig, count: int, rng: np.random.Generator, name: str):
    """Hack 21 (class_conditional; ganhacks 16, "if you have labels, use them"), G's side with g_conditioning
    concat: G is told the class of the image to draw by a learned embedding of it, N(0, 1) at first like z,
    concatenated to z (Mirza & Osindero 2014). Without it nothing is drawn from `rng`, so the weights are today's.

    concat: concat(z, Embedding(count, latent_dim)(classes))   (N, latent_dim), int (N,) -> (N, 2 * latent_dim)
    batch_norm (the class enters through class_norm), or off: z   (N, latent_dim)
    """
    if not (hacks.class_conditional and hacks.g_conditioning == "concat"):
        return z
    initializer = keras.initializers.RandomNormal(stddev=1.0, seed=int(rng.integers(2**31 - 1)))
    embedded = layers.Embedding(count, z.shape[-1], embeddings_initializer=initializer,
                                name=f"{name}_embedding")(classes)  # (N, latent_dim)
    return layers.Concatenate(name=name)([z, embedded])  # (N, 2 * latent_dim)


def conditional_norm_off(hacks: HacksConfig) -> bool:
    """Whether G's BatchNorm layers keep their own scale and offset: all but hack 21 with g_conditioning
    batch_norm."""
    return not (hacks.class_conditional and hacks.g_conditioning == "batch_norm")


CLASS_NORM_STDDEV = 0.5  # hack 21's conditional BatchNorm: gains start ~ N(1, this), biases ~ N(0, this)


def class_norm(x, classes, *, hacks: HacksConfig, count: int, rng: np.random.Generator, name: str):
    """Hack 21, G's side with g_conditioning batch_norm: conditional BatchNorm (de Vries et al. 2017; Miyato &
    Koyama 2018's generator): after a BatchNorm without its own scale and offset, each class's own learned gains
    and biases, so the class modulates every block of G while z drives the content. They start at random, gains
    ~ N(1, 0.5) and biases ~ N(0, 0.5), so each class differs from the first step, as BigGAN's class-dependent
    gains do; started at exactly 1 and 0, G began blind to the class and stayed so (the digits, 1,500 steps:
    every row of the per-class grid alike, even with AC-GAN's class loss). Seeds come from `rng`.

    batch_norm: x * gain[class] + bias[class]     (N, h, w, c), int (N,) -> (N, h, w, c)
    concat, or off: x                              (G's BatchNorm scales and offsets itself)
    """
    if conditional_norm_off(hacks):
        return x
    channels = x.shape[-1]
    gains, biases = (keras.initializers.RandomNormal(mean, CLASS_NORM_STDDEV, seed=int(rng.integers(2**31 - 1)))
                     for mean in (1.0, 0.0))
    gain = layers.Embedding(count, channels, embeddings_initializer=gains, name=f"{name}_gain")(classes)  # (N, c)
    bias = layers.Embedding(count, channels, embeddings_initializer=biases, name=f"{name}_bias")(classes)  # (N, c)
    gain = layers.Reshape((1, 1, channels), name=f"{name}_gain_map")(gain)  # (N, 1, 1, c)
    bias = layers.Reshape((1, 1, channels), name=f"{name}_bias_map")(bias)  # (N, 1, 1, c)
    scaled = layers.Multiply(name=f"{name}_scaled")([x, gain])  # (N, h, w, c)
    return layers.Add(name=f"{name}_shifted")([scaled, bias])  # (N, h, w, c)


def class_head(features, score, classes, *, hacks: HacksConfig, count: int, rng: np.random.Generator):
    """Hack 21, D's side: D judges an image together with its class. `features` (N, F) are D's flattened features,
    `score` (N, 1) its raw score, `classes` int (N,). Returns D's raw score and its class logits (or None). The new
    weights start as hack 5 says (kernel_initializer); without the hack nothing is drawn from `rng`.

    projection (Miyato & Koyama 2018): score + <Embedding(count, F)(classes), features>   (N, 1), None
    auxiliary (AC-GAN, Odena et al. 2017): score, and a class head Dense(count)(features)  (N, 1), (N, count)
    off: score, None
    """
    if not hacks.class_conditional:
        return score, None
    initializer = kernel_initializer(hacks, rng)
    if hacks.conditioning == "auxiliary":
        head = layers.Dense(count, kernel_initializer=initializer, name="class_logits")
        return score, spectral_norm(head, hacks=hacks)(features)  # (N, count)
    embedded = layers.Embedding(count, features.shape[-1], embeddings_initializer=initializer,
                                name="class_embedding")(classes)  # (N, F)
    projected = ops.sum(ops.cast(embedded, features.dtype) * features, axis=1, keepdims=True)  # (N, 1)
    return layers.Add(name="projected_score")([score, projected]), None  # (N, 1)


def class_loss(objective: losses.Objective, *, hacks: HacksConfig) -> losses.Objective:
    """Hack 21's losses. With the auxiliary classifier, D's output is (N, 1 + count): its usual output, then the
    class logits, and both losses add aux_weight times the logits' cross-entropy against the image's class: D's on
    its real images, G's on its fakes (losses.auxiliary says why not D's on fakes too, as Odena et al. do).

    auxiliary: losses.auxiliary(objective, weight=aux_weight)
    projection, or off: objective (the class acts through D's score)
    """
    if hacks.class_conditional and hacks.conditioning == "auxiliary":
        return losses.auxiliary(objective, weight=hacks.aux_weight)
    return objective


def replay(fake, fake_classes, buffer: tuple, read, write, *, hacks: HacksConfig) -> tuple:
    """Hack 22 (experience replay; ganhacks 8; Shrivastava et al. 2017, SimGAN's history of generated images): D's
    fake batch takes round(replay_fraction * N) of its images (in front) from a buffer of past fakes, so D keeps
    seeing what G drew before; then the step's own fakes are written into the buffer: into its empty places first,
    then over places drawn at random, never two into one place. `fake` (N, H, W, C) in the model range,
    `fake_classes` (N,) or None (hack 21), `buffer` the ReplayBuffer's values (images, classes, filled), `read`
    and `write` the step's draws for them. At the first step the buffer is empty and the batch is the step's own.
    Returns D's fakes, their classes and the buffer's new values.

    on:  (past fakes + the step's, their classes, the buffer with the step's fakes in it)
    off: (fake, fake_classes, buffer) unchanged
    """
    if not hacks.replay:
        return fake, fake_classes, buffer
    images, classes, filled = (ops.convert_to_tensor(value, dtype) for value, dtype in
                               zip(buffer, ("float32", "int32", "int32")))
    n, size = fake.shape[0], images.shape[0]
    taken = min(n, round(hacks.replay_fraction * n))
    fake = ops.cast(fake, images.dtype)
    labels = ops.zeros((n,), "int32") if fake_classes is None else ops.cast(fake_classes, "int32")
    if taken:
        index = ops.cast(ops.floor(read.random(taken) * ops.cast(ops.maximum(filled, 1), "float32")), "int32")
        index = ops.minimum(index, size - 1)  # (taken,) places among the filled ones
        empty = ops.equal(filled, 0)
        past = ops.where(empty, fake[:taken], ops.take(images, index, axis=0))  # (taken, H, W, C)
        past_labels = ops.where(empty, labels[:taken], ops.take(classes, index, axis=0))  # (taken,)
        shown = ops.concatenate([past, fake[taken:]], axis=0)  # (N, H, W, C)
        shown_labels = ops.concatenate([past_labels, labels[taken:]], axis=0)  # (N,)
    else:
        shown, shown_labels = fake, labels
    # The empty places in order first, then filled ones in a random order: N distinct places.
    place = ops.arange(size, dtype="int32")
    keys = ops.where(ops.greater_equal(place, filled), ops.cast(place - size, "float32"),
                     write.random(size))  # (size,)
    places = ops.cast(ops.argsort(keys)[:n], "int32")  # (N,)
    images = ops.scatter_update(images, places[:, None], fake)
    classes = ops.scatter_update(classes, places[:, None], labels)
    filled = ops.minimum(filled + n, size)
    return shown, None if fake_classes is None else shown_labels, (images, classes, filled)
