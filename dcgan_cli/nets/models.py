"""Generator, discriminator and the combined GAN model, built and compiled from the config."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from dcgan_cli.nets import hacks, losses
from dcgan_cli.config import Config
from dcgan_cli.data.common import Dataset
from dcgan_cli.nets.gradients import keeping_gradient_norm
from dcgan_cli.nets.layers import AUGMENT_DRAWS, AUGMENT_OPS, DiffAugment


@dataclass(frozen=True)
class Classes:
    """The classes of a class-conditional run (hack 21): their names in index order and how many training images
    each has (the fake classes' frequencies with hacks.class_draw: frequency)."""

    names: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, dataset: Dataset) -> Classes:
        """The dataset's classes: its folder names, else the label values 0..K-1 as text."""
        count = len(dataset.class_names) if dataset.class_names else int(dataset.labels.max()) + 1
        names = tuple(dataset.class_names) if dataset.class_names else tuple(str(k) for k in range(count))
        return cls(names=names, counts=tuple(int(n) for n in np.bincount(dataset.labels, minlength=count)))

    def to_json(self) -> dict:
        return {"names": list(self.names), "counts": list(self.counts)}

    @classmethod
    def from_json(cls, saved: dict) -> Classes:
        return cls(names=tuple(str(name) for name in saved["names"]), counts=tuple(int(n) for n in saved["counts"]))

    @property
    def frequencies(self) -> np.ndarray:
        """Each class's share of the training images: float64 (K,)."""
        return np.asarray(self.counts, np.float64) / sum(self.counts)

    def drawn(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n classes drawn from `rng` as often as the data has them: int32 (n,)."""
        return rng.choice(self.count, size=n, p=self.frequencies).astype(np.int32)

    def rows(self, per_class: int) -> np.ndarray:
        """Every class `per_class` times in a row, class by class (0, 0, ..., 1, 1, ...): int32 (K * per_class,)."""
        return np.repeat(np.arange(self.count, dtype=np.int32), per_class)

    def index(self, name: str) -> int:
        """The index of the class called `name` (or given by its index); ValueError naming the classes."""
        if name in self.names:
            return self.names.index(name)
        if name.isdigit() and int(name) < self.count:
            return int(name)
        raise ValueError(f"no class {name!r}; the classes are {', '.join(self.names)}")

    def balanced(self, n: int) -> np.ndarray:
        """n class indices cycling through the classes (0, 1, ..., K-1, 0, ...): int32 (n,)."""
        return (np.arange(n) % self.count).astype(np.int32)

    def grid(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """A grid of one row per class on the first n_samples // K fixed latents, the same latents in every row:
        (z (K * cols, latent_dim), classes int32 (K * cols,), cols)."""
        cols = max(1, len(latents) // self.count)
        return np.tile(latents[:cols], (self.count, 1)), self.rows(cols), cols


class ReplayBuffer:
    """Hack 22's store of past fakes on the device: images (replay_size, H, W, C) in the model range, their classes
    (replay_size,) (hack 21's; zeros without it) and how many places are filled (int32), as Keras variables, so a
    checkpoint keeps them and a resumed run replays what the uninterrupted one would."""

    def __init__(self, size: int, shape: tuple[int, ...]):
        self.images = keras.Variable(np.zeros((size, *shape), np.float32), trainable=False, name="replay_images")
        self.classes = keras.Variable(np.zeros((size,), np.int32), trainable=False, name="replay_classes")
        self.filled = keras.Variable(np.zeros((), np.int32), trainable=False, name="replay_filled")

    @property
    def variables(self) -> list:
        return [self.images, self.classes, self.filled]

    def values(self) -> tuple:
        return tuple(v.value for v in self.variables)

    def assign(self, values: tuple) -> None:
        for variable, value in zip(self.variables, values):
            variable.assign(value)


class AdaptiveState:
    """Hack 23's strength p and its running sum of D's signs on reals, and hack 24's moving averages of D's raw
    scores on real and fake images (hacks.ADAPTIVE_STATE), as one float32 Keras variable (4,): on the device, in
    every checkpoint, so a resumed run adapts as the uninterrupted one would."""

    def __init__(self) -> None:
        self.state = keras.Variable(np.zeros(len(hacks.ADAPTIVE_STATE), np.float32), trainable=False,
                                    name="adaptive_state")

    @property
    def variables(self) -> list:
        return [self.state]

    def value(self):
        return self.state.value

    def assign(self, value) -> None:
        self.state.assign(value)


@dataclass(frozen=True)
class Models:
    """The models of a run; `gan` is z -> D(G(z)) and shares its layers with `g` and `d`; `g_ema`, with
    train.ema_decay, is a second G holding the moving average of G's variables."""

    g: keras.Model
    d: keras.Model
    gan: keras.Model
    g_ema: keras.Model | None = None
    classes: Classes | None = None  # hack 21: G takes (z, class) and D (image, class)
    replay: ReplayBuffer | None = None  # hack 22: the past fakes D's fake batches draw from
    adaptive: AdaptiveState | None = None  # hacks 23 and 24: the augmentation strength and LeCam's averages

    @property
    def sampler(self) -> keras.Model:
        """The G that grids and scores use: the moving average when kept, else G itself."""
        return self.g_ema if self.g_ema is not None else self.g


def g_inputs(z, classes):
    """G's input: z (N, latent_dim), or [z, classes (N,)] for a class-conditional G (hack 21)."""
    return z if classes is None else [z, classes]


def d_inputs(images, classes):
    """D's input: images (N, H, W, C), or [images, classes (N,)] for a class-conditional D (hack 21)."""
    return images if classes is None else [images, classes]


def base_size(image_size: int, smallest: int = 4) -> tuple[int, int]:
    """G's base side and the number of doublings to reach image_size: halve while even and above `smallest`
    (model.base_size, the networks' depth).

    64 -> (4, 4), 28 -> (7, 2), 16 -> (4, 2), 10 -> (5, 1); with smallest 8: 64 -> (8, 3), 32 -> (8, 2).
    """
    side, doublings = image_size, 0
    while side % 2 == 0 and side > smallest:
        side, doublings = side // 2, doublings + 1
    return side, doublings


def _filters(start: int, cap: int, count: int) -> list[int]:
    """start, 2*start, 4*start, ... (count values), each capped at cap."""
    return [min(start * 2**i, cap) for i in range(count)]


def build_generator(cfg: Config, rng: np.random.Generator, classes: Classes | None = None) -> keras.Model:
    """G: z (N, latent_dim) (and the class, hack 21) -> Dense -> (base, base) -> one upsampling block per doubling
    -> image."""
    m, h = cfg.model, cfg.hacks
    base, doublings = base_size(m.image_size, m.base_size)
    widths = _filters(m.g_filters, m.max_filters, doublings)[::-1]  # widths[0] at the base, widest
    leaky = m.g_activation == "leaky_relu"
    # G is never frozen inside a training call, so its BN keeps Keras' own frozen behaviour.
    norm = dict(hacks=h, momentum=m.bn_momentum, epsilon=m.bn_epsilon, frozen_statistics="moving",
                affine=hacks.conditional_norm_off(h))
    conv = dict(hacks=h, kernel_size=m.kernel_size)

    z = keras.Input((m.latent_dim,), name="z")  # (N, latent_dim)
    label = _class_input(h, classes)  # int (N,) with hack 21, else None
    count = classes.count if classes else 0
    x = hacks.class_input(z, label, hacks=h, count=count, rng=rng,
                          name="z_and_class")  # (N, latent_dim), or (N, 2 * latent_dim) concatenated
    x = layers.Dense(base * base * widths[0], use_bias=hacks.conv_bias(h),
                     kernel_initializer=hacks.kernel_initializer(h, rng), name="project")(x)  # (N, base*base*w0)
    x = layers.Reshape((base, base, widths[0]), name="reshape")(x)  # (N, base, base, w0)
    x = hacks.batch_norm(x, name="project_bn", **norm)  # (N, base, base, w0)
    x = hacks.class_norm(x, label, hacks=h, count=count, rng=rng, name="project_bn_class")  # same shape
    x = hacks.activation(x, hacks=h, leaky=leaky, name="project_act")  # (N, base, base, w0)
    x = hacks.g_dropout(x, hacks=h, rng=rng, name="project_dropout")  # same shape
    for block, width in enumerate(widths[1:], start=1):
        x = hacks.upsample(x, filters=width, use_bias=hacks.conv_bias(h), initializer=hacks.kernel_initializer(h, rng),
                           name=f"up{block}", **conv)  # (N, base*2^block, base*2^block, width)
        x = hacks.batch_norm(x, name=f"up{block}_bn", **norm)  # same shape
        x = hacks.class_norm(x, label, hacks=h, count=count, rng=rng, name=f"up{block}_bn_class")  # same shape
        x = hacks.activation(x, hacks=h, leaky=leaky, name=f"up{block}_act")  # same shape
        x = hacks.g_dropout(x, hacks=h, rng=rng, name=f"up{block}_dropout")  # same shape
    x = hacks.upsample(x, filters=m.channels, use_bias=True, initializer=hacks.kernel_initializer(h, rng),
                       name="to_image", **conv)  # (N, image_size, image_size, channels)
    image = layers.Activation(hacks.output_activation(h), dtype="float32", name="image")(x)  # same, model range
    return keras.Model(g_inputs(z, label), image, name="generator")


def _class_input(h, classes: Classes | None):
    """The class input of a conditional G or D (hack 21): int32 (N,); None without the hack."""
    if not h.class_conditional:
        return None
    assert classes is not None, "a class-conditional model needs the data's classes"
    return keras.Input((), dtype="int32", name="class")


def build_discriminator(cfg: Config, rng: np.random.Generator, classes: Classes | None = None) -> keras.Model:
    """D: image (and its class, hack 21) -> one strided block per doubling (mirroring G) -> Flatten -> Dense ->
    the raw score s (N, 1), its logit, on which the losses work (losses.probability gives sigmoid(s)); with hack
    21's auxiliary classifier, the class logits follow: (N, 1 + K)."""
    m, h = cfg.model, cfg.hacks
    base, doublings = base_size(m.image_size, m.base_size)
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
    features = layers.Flatten(name="flatten")(x)  # (N, F = base*base*(widths[-1] (+ 1)))
    score = layers.Dense(1, kernel_initializer=hacks.kernel_initializer(h, rng), name="score")
    x = hacks.spectral_norm(score, hacks=h)(features)  # (N, 1)
    label = _class_input(h, classes)  # int (N,) with hack 21, else None
    x, logits = hacks.class_head(features, x, label, hacks=h, count=classes.count if classes else 0,
                                 rng=rng)  # (N, 1), (N, K) or None
    output = layers.Activation("linear", dtype="float32", name="d_score")(x)  # (N, 1): the raw score, float32
    if logits is not None:
        output = layers.Concatenate(dtype="float32", name="output_and_classes")([output, logits])  # (N, 1 + K)
    return keras.Model(d_inputs(image, label), output, name="discriminator")


def build_models(cfg: Config, rng: np.random.Generator, classes: Classes | None = None) -> Models:
    """Build G, D and the combined model, and compile D and the GAN, each with its own optimizer (hack 6); with
    hack 21 both networks and the combined model also take the class (`classes`: the data's)."""
    g = build_generator(cfg, rng, classes)
    d = build_discriminator(cfg, rng, classes)
    z = keras.Input((cfg.model.latent_dim,), name="z")  # (N, latent_dim)
    label = _class_input(cfg.hacks, classes)  # int (N,) with hack 21, else None
    inputs = [z] if label is None else [z, label]
    image = g(g_inputs(z, label))  # (N, size, size, channels)
    if cfg.hacks.diff_augment or cfg.hacks.adaptive_augment:  # hacks 20, 23: the G update's D input is augmented
        #                                                          by the step's draws, an input here
        width = AUGMENT_DRAWS + (AUGMENT_OPS if cfg.hacks.adaptive_augment else 0)
        draws = keras.Input((width,), name="augment_draws")  # (N, 7), or (N, 12): the draws, which operations apply
        augmented = DiffAugment(policy=cfg.hacks.diff_augment_policy, name="augmented")
        inputs, image = [*inputs, draws], augmented([image, draws])  # same shape
    if cfg.hacks.instance_noise:  # hack 14: the G update's D input gets the step's noise, an input here
        noise = keras.Input(g.output.shape[1:], name="d_input_noise")  # (N, size, size, channels)
        inputs, image = [*inputs, noise], layers.Add(name="noisy")([image, noise])  # same shape
    gan = keras.Model(inputs if len(inputs) > 1 else z, d(d_inputs(image, label)),
                      name="gan")  # (N, 1) (or (N, 1 + K)): D's belief G's are real
    objective = hacks.objective(cfg.hacks)
    d.compile(optimizer=hacks.optimizer(cfg.hacks, network="d"), loss=objective.d_loss,
              metrics=[losses.DMetrics(objective)])
    gan.compile(optimizer=keeping_gradient_norm(hacks.optimizer(cfg.hacks, network="g")), loss=objective.g_loss)
    g_ema = None
    if cfg.train.ema_decay > 0:
        # Its own initializer seeds, so `rng` draws what it draws without the average; then G's values.
        g_ema = build_generator(cfg, np.random.default_rng(0), classes)
        g_ema.set_weights(g.get_weights())
    replay = ReplayBuffer(cfg.hacks.replay_size, tuple(g.output.shape[1:])) if cfg.hacks.replay else None
    adaptive = AdaptiveState() if cfg.hacks.adaptive_augment or cfg.hacks.lecam else None
    return Models(g=g, d=d, gan=gan, g_ema=g_ema, classes=classes if cfg.hacks.class_conditional else None,
                  replay=replay, adaptive=adaptive)


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


def generate(g: keras.Model, z: np.ndarray, cfg: Config, classes: np.ndarray | None = None) -> np.ndarray:
    """G in inference mode (BatchNorm moving statistics) on latents z (N, latent_dim), and for a class-conditional
    G their classes (N,): uint8 images (N, H, W, C). The states of G's random generators (hack 15) are put back
    afterwards: sampling never changes training."""
    generators = saved_variables(g)[len(g.weights):]
    states = [ops.copy(v.value) for v in generators]
    try:
        inputs = g_inputs(z, None if classes is None else np.asarray(classes, np.int32))
        return hacks.unscale_images(g.predict_on_batch(inputs), hacks=cfg.hacks)
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
