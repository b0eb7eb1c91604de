"""The GAN hacks: one function each, its "on" and "off" branches side by side — the eleven DCGAN and ganhacks
practices, then the stabilisers that came after (12 onward, each off by default).

Only this module reads the `hacks` config section, so flipping one switch changes exactly one thing. "Off" is always
a concrete, documented alternative, so an ablation compares two real settings.

Sources: DCGAN = Radford, Metz & Chintala (2015), "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks"; ganhacks = Chintala et al., "How to Train a GAN?" (github.com/soumith/ganhacks);
Salimans et al. (2016), "Improved Techniques for Training GANs". Hacks 12 onward name their own sources.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from dcgan_cli.nets import losses
from dcgan_cli.config import HacksConfig
from dcgan_cli.nets.layers import AUGMENT_DRAWS, AUGMENT_OPS, BatchNorm, MinibatchStdDev, SamplingDropout, SpectralNorm
from dcgan_cli.nets.layers import diff_augment as augment


def downsample(x, *, filters: int, hacks: HacksConfig, kernel_size: int, use_bias: bool,
               initializer: keras.initializers.Initializer, name: str):
    """Hack 1 (DCGAN): halve the resolution in D with a strided convolution instead of pooling.

    on:  Conv2D(filters, k, strides=2)                   (N, H, W, C) -> (N, H/2, W/2, filters)
    off: Conv2D(filters, k, strides=1) + MaxPooling2D(2) (N, H, W, C) -> (N, H, W, filters) -> (N, H/2, W/2, filters)
    """
    strides = 2 if hacks.strided_conv else 1
    conv = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
                         kernel_initializer=initializer, name=name)
    x = spectral_norm(conv, hacks=hacks)(x)
    if hacks.strided_conv:
        return x
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def upsample(x, *, filters: int, hacks: HacksConfig, kernel_size: int, use_bias: bool,
             initializer: keras.initializers.Initializer, name: str):
    """Hack 2 (DCGAN): double the resolution in G with a strided transposed convolution.

    on:  Conv2DTranspose(filters, k, strides=2)          (N, H, W, C) -> (N, 2H, 2W, filters)
    off: UpSampling2D(2) + Conv2D(filters, k, strides=1) (N, H, W, C) -> (N, 2H, 2W, C) -> (N, 2H, 2W, filters)
    """
    if hacks.transposed_conv:
        return layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same", use_bias=use_bias,
                                      kernel_initializer=initializer, name=name)(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(x)
    return layers.Conv2D(filters, kernel_size, strides=1, padding="same", use_bias=use_bias,
                         kernel_initializer=initializer, name=name)(x)


def activation(x, *, hacks: HacksConfig, leaky: bool, name: str):
    """Hack 3 (DCGAN): LeakyReLU where `leaky` (all of D; G when model.g_activation is leaky_relu).

    on:  LeakyReLU(negative_slope=hacks.leaky_slope) where `leaky`, else ReLU   shape unchanged
    off: ReLU everywhere                                                         shape unchanged
    """
    if hacks.leaky_relu and leaky:
        return layers.LeakyReLU(negative_slope=hacks.leaky_slope, name=name)(x)
    return layers.ReLU(name=name)(x)


def batch_norm(x, *, hacks: HacksConfig, momentum: float, epsilon: float, frozen_statistics: str, name: str,
               affine: bool = True):
    """Hack 4 (DCGAN): BatchNormalization between a convolution and its activation; without its own scale and
    offset where hack 21's class_norm gives them (`affine` False).

    on:  BatchNorm(momentum, epsilon); frozen_statistics picks batch or moving statistics while frozen
    off: identity (no layer)
    """
    if not hacks.batch_norm:
        return x
    return BatchNorm(momentum=momentum, epsilon=epsilon, frozen_statistics=frozen_statistics, center=affine,
                     scale=affine, name=name)(x)


def d_steps(hacks: HacksConfig) -> int:
    """Hack 13 (WGAN, Arjovsky et al. 2017; ganhacks 14, "train D more"): D's updates per G update. Each D
    sub-step has its own real batch, latents and labels; G's update uses the last sub-step's latents.

    on:  d_steps (2) sub-steps of D's updates, then one G update
    off: 1
    """
    return hacks.d_steps if hacks.train_d_more else 1


def instance_noise(images, rng, step, *, hacks: HacksConfig):
    """Hack 14 (Sonderby et al. 2016, "Amortised MAP Inference for Image Super-resolution"; ganhacks 13): noise on
    D's inputs, real and fake alike, in D's and G's updates, fading out as training goes on. images (N, H, W, C) in
    the model range, rng a step's draws, step the training step.

    on:  images + N(0, sigma^2), sigma = instance_noise_std * max(0, 1 - step / instance_noise_steps)   same shape
    off: images unchanged
    """
    if not hacks.instance_noise:
        return images
    return ops.add(images, ops.multiply(noise_std(step, hacks=hacks), rng.standard_normal(tuple(images.shape))))


def diff_augment(images, rng, *, hacks: HacksConfig):
    """Hack 20 (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same
    differentiable colour, translation and cutout augmentation (layers.diff_augment) on every D input, real and
    fake, in D's updates and in the G update, each image with its own draws.

    on:  layers.diff_augment(images, rng.uniform(0, 1, (N, 7)), policy=diff_augment_policy)   same shape
    off: images unchanged
    """
    if not hacks.diff_augment:
        return images
    return augment(images, augment_draws(images.shape[0], rng), policy=hacks.diff_augment_policy)


def augment_draws(n: int, rng):
    """The uniform draws of hack 20 for n images, (n, AUGMENT_DRAWS) in [0, 1)."""
    return rng.uniform(0.0, 1.0, (n, AUGMENT_DRAWS))


def adaptive_augment(images, rng, gates, p, *, hacks: HacksConfig):
    """Hack 23 (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", ADA): hack 20's
    operations on every D input, real and fake, in D's updates and the G update, each operation applied to each
    image with probability p, the strength that adapt() moves with D's overfitting. `rng` draws the operations'
    magnitudes (those of hack 20), `gates` whether each applies; p is a float32 scalar in [0, 1].

    on:  layers.diff_augment(images, hack 20's draws, on = gates.uniform(0, 1, (N, 5)) < p,
                             policy=diff_augment_policy)   same shape
    off: images unchanged
    """
    if not hacks.adaptive_augment:
        return images
    n = images.shape[0]
    return augment(images, augment_draws(n, rng), augment_gates(n, gates, p), policy=hacks.diff_augment_policy)


def augment_gates(n: int, rng, p):
    """Which of hack 23's operations apply to each of n images at strength p: float32 (n, AUGMENT_OPS), 1 or 0."""
    return ops.cast(rng.uniform(0.0, 1.0, (n, AUGMENT_OPS)) < p, "float32")


ADAPTIVE_STATE = ("augment_p", "sign_sum", "real_average", "fake_average")  # models.AdaptiveState's values


def adapt(state, real_sign, real_score, fake_score, step, *, hacks: HacksConfig, batch_size: int):
    """Hacks 23 and 24 after step `step`'s D updates, on the float32 state (4,) (ADAPTIVE_STATE), given D's mean
    sign of its raw score on the step's real batch, and its mean raw scores on the real and the fake batch.

    Hack 23 (ADA): the signs are summed over ada_interval steps; at the interval's end r_t = their mean, and p
    moves by sign(r_t - ada_target) * batch_size * ada_interval / (1000 * ada_kimg), clipped to [0, 1]: from 0 to
    1 in ada_kimg thousand images at the most. Off: p and the sum stay 0.
    Hack 24 (LeCam): the averages move toward the step's scores, a <- lecam_decay a + (1 - lecam_decay) score.
    Off: they stay 0.
    """
    p, sign_sum, real_average, fake_average = (state[k] for k in range(len(ADAPTIVE_STATE)))
    if hacks.adaptive_augment:
        sign_sum = sign_sum + ops.cast(real_sign, "float32")
        due = ops.equal(ops.mod(step, hacks.ada_interval), 0)
        r_t = sign_sum / float(hacks.ada_interval)
        rate = batch_size * hacks.ada_interval / (1000.0 * hacks.ada_kimg)
        moved = ops.clip(p + ops.sign(r_t - hacks.ada_target) * rate, 0.0, 1.0)
        p, sign_sum = ops.where(due, moved, p), ops.where(due, 0.0, sign_sum)
    if hacks.lecam:
        decay = hacks.lecam_decay
        real_average = decay * real_average + (1.0 - decay) * ops.cast(real_score, "float32")
        fake_average = decay * fake_average + (1.0 - decay) * ops.cast(fake_score, "float32")
    return ops.stack([ops.cast(v, "float32") for v in (p, sign_sum, real_average, fake_average)])


def augment_strength(state, *, hacks: HacksConfig):
    """The augmentation strength D's inputs get: hack 23's p from the state (4,), else 1 with hack 20, else 0."""
    if hacks.adaptive_augment:
        return state[0]
    return 1.0 if hacks.diff_augment else 0.0


def noise_std(step, *, hacks: HacksConfig):
    """Hack 14's standard deviation at `step`: instance_noise_std falling linearly to 0 at instance_noise_steps."""
    fraction = ops.cast(step, "float32") / float(hacks.instance_noise_steps)
    return hacks.instance_noise_std * ops.maximum(0.0, 1.0 - fraction)


def g_dropout(x, *, hacks: HacksConfig, rng: np.random.Generator, name: str):
    """Hack 15 (ganhacks 17; pix2pix, Isola et al. 2017): dropout after each of G's hidden blocks, in training and
    in sampling, as a source of noise; its seed is drawn from `rng` (the initial weights' generator).

    on:  SamplingDropout(g_dropout_rate)   same shape
    off: identity (no layer)
    """
    if not hacks.g_dropout:
        return x
    return SamplingDropout(hacks.g_dropout_rate, seed=int(rng.integers(2**31 - 1)), name=name)(x)


def spectral_norm(layer: keras.layers.Layer, *, hacks: HacksConfig) -> keras.layers.Layer:
    """Hack 16 (Miyato et al. 2018, "Spectral Normalization for GANs"): each of D's convolutions and its final
    Dense divided by its largest singular value (one power iteration per training step).

    on:  SpectralNorm(layer), named after it with "_sn"   same shapes
    off: the layer itself
    """
    if not hacks.spectral_norm:
        return layer
    return SpectralNorm(layer, name=f"{layer.name}_sn")


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


def minibatch_std(x, *, hacks: HacksConfig, name: str):
    """Hack 19 (Karras et al. 2018, "Progressive Growing of GANs"): after D's last block, the batch's mean
    standard deviation as an extra feature map, a cheap guard against mode collapse.

    on:  MinibatchStdDev                 (N, h, w, c) -> (N, h, w, c + 1)
    off: identity (no layer)
    """
    if not hacks.minibatch_std:
        return x
    return MinibatchStdDev(name=name)(x)


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
    then over places drawn at random, never two into one place. `fake` (N, H, W, C) in the model range, `fake_classes` (N,)
    or None (hack 21), `buffer` the ReplayBuffer's values (images, classes, filled), `read` and `write` the step's
    draws for them. At the first step the buffer is empty and the batch is the step's own. Returns D's fakes, their
    classes and the buffer's new values.

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


def conv_bias(hacks: HacksConfig) -> bool:
    """Whether a layer that batch norm may follow keeps its bias: BN's offset makes it redundant (hack 4 on)."""
    return not hacks.batch_norm


def kernel_initializer(hacks: HacksConfig, rng: np.random.Generator) -> keras.initializers.Initializer:
    """Hack 5 (DCGAN): Gaussian weight init; each call draws its own seed from `rng`, so layers differ.

    on:  RandomNormal(mean=0, stddev=hacks.init_stddev)
    off: GlorotUniform (the Keras default)
    """
    seed = int(rng.integers(2**31 - 1))
    if hacks.gaussian_init:
        return keras.initializers.RandomNormal(mean=0.0, stddev=hacks.init_stddev, seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def optimizer(hacks: HacksConfig, *, network: str) -> keras.optimizers.Optimizer:
    """Hack 6 (DCGAN): a new Adam for D or G (`network` "d" or "g"), at the rate learning_rate(...) gives it.

    on:  Adam(learning_rate, beta_1=hacks.beta_1)   (2e-4, 0.5)
    off: Adam(learning_rate) with Keras' beta_1     (1e-3, 0.9)
    """
    rate = learning_rate(hacks, network=network)
    if hacks.adam:
        return keras.optimizers.Adam(learning_rate=rate, beta_1=hacks.beta_1)
    return keras.optimizers.Adam(learning_rate=rate)


def learning_rate(hacks: HacksConfig, *, network: str) -> float:
    """Hack 12 (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule"): D's or G's learning rate.

    on:  d_learning_rate for D, g_learning_rate for G   (4e-4, 1e-4)
    off: the same rate for both: learning_rate with adam on (2e-4), Keras' Adam default 1e-3 with adam off
    """
    if hacks.ttur:
        return hacks.d_learning_rate if network == "d" else hacks.g_learning_rate
    return hacks.learning_rate if hacks.adam else 1e-3


def _float32(x):
    """x as float32: a NumPy array stays one (the host's draws and batches), a backend tensor stays one."""
    return x.astype(np.float32) if isinstance(x, np.ndarray) else ops.cast(x, "float32")


def scale_images(images, *, hacks: HacksConfig):
    """Hack 7 (DCGAN): uint8 pixels to the model range, float32, same shape; a NumPy array on the host, a backend
    tensor inside a compiled step (the same float32 arithmetic, so both give the same values).

    on:  (x - 127.5) / 127.5, in [-1, 1]
    off: x / 255, in [0, 1]
    """
    images = _float32(images)
    if hacks.scale_images:
        return (images - 127.5) / 127.5
    return images / 255.0


def unscale_images(images: np.ndarray, *, hacks: HacksConfig) -> np.ndarray:
    """Hack 7, inverse: model-range floats back to uint8 pixels (clipped, rounded; NaN black), same shape."""
    images = np.asarray(images, dtype=np.float32)
    pixels = images * 127.5 + 127.5 if hacks.scale_images else images * 255.0
    return np.clip(np.rint(np.nan_to_num(pixels, nan=0.0)), 0, 255).astype(np.uint8)


def output_activation(hacks: HacksConfig) -> str:
    """Hack 7, G's last activation, matching the pixel range: on: tanh; off: sigmoid."""
    return "tanh" if hacks.scale_images else "sigmoid"


def sample_latent(rng, n: int, latent_dim: int, *, hacks: HacksConfig):
    """Hack 8 (ganhacks): n latent vectors, float32 (n, latent_dim), from a NumPy Generator (a NumPy array) or a
    step's device draws (draws.StepRandom, a tensor).

    on:  z ~ N(0, 1)
    off: z ~ U(-1, 1)
    """
    if hacks.gaussian_latent:
        return rng.standard_normal((n, latent_dim), dtype=np.float32)
    return _float32(rng.uniform(-1.0, 1.0, (n, latent_dim)))


def d_batch_plan(n: int, rng, *, hacks: HacksConfig) -> list:
    """Hack 9 (ganhacks): the D updates of one step, each an int32 index tensor into the pool concat(real, fake)
    of 2n images (index < n is real).

    on:  [0 .. n-1], then [n .. 2n-1]: two updates, one all-real, one all-fake
    off: [a random permutation of 0 .. 2n-1]: one update on a mixed batch of 2n
    """
    if hacks.separate_batches:
        return [ops.arange(n, dtype="int32"), ops.arange(n, 2 * n, dtype="int32")]
    return [ops.cast(ops.argsort(rng.random(2 * n)), "int32")]


def smooth_labels(is_real, rng, *, hacks: HacksConfig):
    """Hack 10 (ganhacks; Salimans et al.): D's targets for bool is_real (n,), float32 (n, 1).

    on:  real ~ U(real_label_range) (0.7, 1.2); fake ~ U(fake_label_range) (0.0, 0.3) if smooth_fake, else 0
    off: real 1, fake 0
    """
    n = is_real.shape[0]
    if not hacks.label_smoothing:
        return ops.expand_dims(ops.cast(is_real, "float32"), 1)
    real = _float32(rng.uniform(*hacks.real_label_range, size=n))
    fake = _float32(rng.uniform(*hacks.fake_label_range, size=n)) if hacks.smooth_fake else ops.zeros((n,))
    return ops.expand_dims(ops.where(is_real, real, fake), 1)


def fake_label_mean(hacks: HacksConfig) -> float:
    """Hacks 10 and 11 on G's images: the mean label D is trained toward on them, which is as low as D(G(z)) goes on
    average when D is sure of every fake, since the flipped ones cannot be told from the rest (the cross-entropy's
    optimum is the mean label): flip_probability x the mean real label + the rest x the mean fake label, 0.05 x 0.95
    = 0.0475 by default, 0 with both off."""
    real = sum(hacks.real_label_range) / 2 if hacks.label_smoothing else 1.0
    fake = sum(hacks.fake_label_range) / 2 if hacks.label_smoothing and hacks.smooth_fake else 0.0
    flipped = hacks.flip_probability if hacks.noisy_labels else 0.0
    return flipped * real + (1.0 - flipped) * fake


def flip_labels(is_real, rng, *, hacks: HacksConfig):
    """Hack 11 (ganhacks): noisy D labels, bool (n,) -> bool (n,).

    on:  each label flipped independently with probability flip_probability
    off: labels unchanged
    """
    if not hacks.noisy_labels:
        return is_real
    return ops.logical_xor(is_real, rng.random(is_real.shape[0]) < hacks.flip_probability)
