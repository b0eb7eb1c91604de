"""Each training step's random numbers, drawn where the step runs from a counter-based key.

The draws of step s come from the key (train.seed, s * SLOTS + slot): slot 0 for the batch's indices, the next ones
for the latents, the mixed-batch permutation and D's label noise, in that order. So the generator's whole state is
(seed, step): a checkpoint records it, a resumed run draws what the uninterrupted one would have, and any step's
draws can be made on their own, inside a compiled step or ahead of it by the thread that streams batches. Both
loops draw through the same functions, so they do the same mathematics.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from dcgan_cli.data import sources
from dcgan_cli.nets import hacks, losses, models
from dcgan_cli.nets.models import Classes
from dcgan_cli.config import Config

SLOTS = 16  # keys per step; a step draws at most 15 times (indices, latents, permutation, 3 per D update, then
#             hack 14's noise and hack 20's augmentation for each D update and the G update)
BATCH_SLOT = 0
NOISE_SLOT = 10  # hack 14: the noise on D's input in update k of a step comes from slot NOISE_SLOT + k ...
AUGMENT_SLOT = 13  # ... hack 20's augmentation from AUGMENT_SLOT + k ...
G_UPDATE = 2  # ... and k = G_UPDATE in the G update
# Draws added after those sixteen come from counters of their own, (seed, EXTRA_BASE + key * EXTRA_SLOTS + slot), so
# every earlier draw keeps its key. The two ranges meet only past 134 million steps (2^31 / SLOTS).
EXTRA_BASE = 2**31
EXTRA_SLOTS = 8
CLASS_SLOT = 0  # hack 21: the fake images' classes
REPLAY_READ_SLOT, REPLAY_WRITE_SLOT = 1, 2  # hack 22: the buffer's places read, and written once full
GATE_SLOT = 3  # hack 23: which operations apply to D's input in update k of a step come from GATE_SLOT + k


@dataclass(frozen=True)
class DrawState:
    """What a checkpoint records of the generator: its seed and the last step it drew for."""

    seed: int
    step: int


class StepRandom:
    """The random draws of one step, each from the next key (seed, step * SLOTS + slot); the methods and arguments
    are NumPy's Generator's, so the hack functions take either. Float32 and int32 backend tensors."""

    def __init__(self, generator: keras.random.SeedGenerator, seed: int, step, *, slot: int, extra: bool = False):
        self.generator, self.slot = generator, slot
        dtype = keras.backend.standardize_dtype(generator.state.dtype)
        self.dtype = dtype
        self.seed = _as_seed(seed, dtype)
        self.slots = EXTRA_SLOTS if extra else SLOTS
        self.counter = ops.cast(step, dtype) * self.slots
        if extra:
            self.counter = self.counter + _as_seed(EXTRA_BASE, dtype)

    def _next(self, draw):
        assert self.slot < self.slots, "a step draws at most SLOTS (and EXTRA_SLOTS) times"
        key = ops.stack([self.seed, self.counter + ops.convert_to_tensor(self.slot, self.dtype)])
        self.slot += 1
        with keras.StatelessScope(state_mapping=[(self.generator.state, key)]):
            return draw(self.generator)

    def standard_normal(self, size, dtype="float32"):
        return self._next(lambda seed: keras.random.normal(_shape(size), dtype=dtype, seed=seed))

    def uniform(self, low, high, size):
        return self._next(lambda seed: keras.random.uniform(_shape(size), minval=low, maxval=high, seed=seed))

    def random(self, size):
        return self.uniform(0.0, 1.0, size)

    def integers(self, low, high, size):
        return self._next(lambda seed: keras.random.randint(_shape(size), low, high, dtype="int32", seed=seed))

    def choice(self, probabilities, size: int):
        """`size` indices drawn with the given probabilities (K,): int32 (size,)."""
        logits = ops.log(ops.convert_to_tensor(np.asarray(probabilities, np.float32)))[None, :]  # (1, K)
        return self._next(lambda seed: ops.cast(keras.random.categorical(logits, size, seed=seed)[0], "int32"))


def _as_seed(value: int, dtype: str):
    """A uint32 value as a tensor of the generator's dtype; Keras' own seeds reinterpret a uint32 as int32 where
    the backend declares signed seeds (torch)."""
    return ops.convert_to_tensor(np.array(value, np.uint32).view(np.int32) if dtype == "int32" else value,
                                 dtype=dtype)


def _shape(size) -> tuple[int, ...]:
    """NumPy's size argument (an int or a tuple) as Keras' shape tuple."""
    return (size,) if isinstance(size, int) else tuple(size)


class Draws:
    """The run's generator of step draws, for a dataset of `count` images; the state is the seed and the step."""

    def __init__(self, cfg: Config, *, count: int, seed: int | None = None, classes: Classes | None = None):
        self.cfg, self.count, self.classes = cfg, count, classes
        self.seed = cfg.train.seed if seed is None else seed
        self.d_steps = hacks.d_steps(cfg.hacks)
        # Its own state is never advanced: each draw maps it to that draw's key.
        self.generator = keras.random.SeedGenerator(0, name="step_draws")

    def random(self, key, *, slot: int, extra: bool = False) -> StepRandom:
        """The draws of counter `key` (the step itself, or a D sub-step's: see key) from `slot` on, among the first
        SLOTS or (`extra`) the EXTRA_SLOTS added later."""
        return StepRandom(self.generator, self.seed, key, slot=slot, extra=extra)

    def key(self, step, sub: int | None):
        """The counter of D's sub-step `sub` of step `step` (hack 13; None: the last, whose latents G's update
        uses): (step - 1) * d_steps + sub + 1, which is the step itself with one D update per step."""
        if self.d_steps == 1:
            return step
        return (step - 1) * self.d_steps + (self.d_steps - 1 if sub is None else sub) + 1

    def batch_index(self, step, sub: int | None = None):
        """The sorted indices of the real batch of step `step` (its D sub-step `sub`), drawn with replacement:
        int32 (batch_size,)."""
        return sources.batch_indices(self.count, self.cfg.train.batch_size,
                                  self.random(self.key(step, sub), slot=BATCH_SLOT))

    def step_index(self, step):
        """The indices of all of step `step`'s real batches, one D sub-step's after another: int32
        (d_steps * batch_size,), what the streaming thread gathers for a step."""
        if self.d_steps == 1:
            return self.batch_index(step)
        return ops.concatenate([self.batch_index(step, sub) for sub in range(self.d_steps)], axis=0)

    def latents_and_plan(self, step, sub: int | None = None) -> tuple:
        """The latents z (N, latent_dim) (hack 8) and the D updates (d_plan) of step `step` (its sub-step `sub`)."""
        random = self.random(self.key(step, sub), slot=BATCH_SLOT + 1)
        n = self.cfg.train.batch_size
        z = hacks.sample_latent(random, n, self.cfg.model.latent_dim, hacks=self.cfg.hacks)
        return z, d_plan(n, random, cfg=self.cfg)

    def real(self, source, step, *, resident: bool, sub: int | None = None):
        """The real batch of step `step` (its sub-step `sub`) in the model range (hack 7), float32 (N, H, W, C):
        gathered from the whole uint8 dataset `source` when resident, else taken from the step's batches the
        streaming thread sent (step_index). With hack 21 the source is a pair (images, labels)."""
        images = source[0] if self.classes is not None else source
        return hacks.scale_images(self._batch(images, step, resident=resident, sub=sub), hacks=self.cfg.hacks)

    def _batch(self, source, step, *, resident: bool, sub: int | None):
        """Step `step`'s (sub-step `sub`'s) rows of `source`: the whole dataset's (resident) or the streamed
        batches'."""
        if resident:
            return ops.take(source, self.batch_index(step, sub), axis=0)
        if self.d_steps > 1:
            n = self.cfg.train.batch_size
            first = (self.d_steps - 1 if sub is None else sub) * n
            return source[first:first + n]
        return source

    def classes_of(self, source, step, *, resident: bool, sub: int | None = None) -> tuple:
        """Hack 21: the classes of step `step`'s (sub-step `sub`'s) real images (their labels, from the source's
        labels) and of its fakes (drawn in CLASS_SLOT of the extra slots: uniformly, or as often as in the data
        with hacks.class_draw: frequency), int32 (N,) each; (None, None) without the hack."""
        if self.classes is None:
            return None, None
        real = ops.cast(self._batch(source[1], step, resident=resident, sub=sub), "int32")
        random = self.random(self.key(step, sub), slot=CLASS_SLOT, extra=True)
        n, count = self.cfg.train.batch_size, self.classes.count
        if self.cfg.hacks.class_draw == "frequency":
            return real, random.choice(self.classes.frequencies, n)
        return real, random.integers(0, count, n)

    def d_input(self, images, step, *, update: int, sub: int | None = None, adaptive=None):
        """D's input in update `update` of step `step`, sub-step `sub` (0 and 1: D's own, G_UPDATE: G's):
        augmented (hack 20, or hack 23 at the strength in the `adaptive` state), then with noise (hack 14)."""
        h, key = self.cfg.hacks, self.key(step, sub)
        images = hacks.diff_augment(images, self.random(key, slot=AUGMENT_SLOT + update), hacks=h)
        if h.adaptive_augment:
            images = hacks.adaptive_augment(images, self.random(key, slot=AUGMENT_SLOT + update),
                                            self.random(key, slot=GATE_SLOT + update, extra=True),
                                            hacks.augment_strength(adaptive, hacks=h), hacks=h)
        return hacks.instance_noise(images, self.random(key, slot=NOISE_SLOT + update), step, hacks=h)

    def replay(self, fake, fake_classes, buffer: tuple | None, step, sub: int | None = None) -> tuple:
        """Hack 22 on step `step`'s (sub-step `sub`'s) fakes: D's fakes, their classes and the replay buffer's new
        values (hacks.replay), its places drawn in REPLAY_READ_SLOT and REPLAY_WRITE_SLOT of the extra slots."""
        if buffer is None:
            return fake, fake_classes, None
        key = self.key(step, sub)
        return hacks.replay(fake, fake_classes, buffer, self.random(key, slot=REPLAY_READ_SLOT, extra=True),
                            self.random(key, slot=REPLAY_WRITE_SLOT, extra=True), hacks=self.cfg.hacks)

    def d_batches(self, real, fake, plan: tuple, step, sub: int | None = None, classes: tuple = (None, None),
                  adaptive=None) -> tuple:
        """The D updates (x, targets) of step `step`, sub-step `sub` (d_batches), each x augmented and with
        noise (d_input); with hack 21 (`classes`: the real and fake images' classes) x is [images, classes] and the
        targets gain the class as a third column; with hack 24 they end in LeCam's averages from the `adaptive`
        state (hacks.ADAPTIVE_STATE)."""
        averages = adaptive[2:] if self.cfg.hacks.lecam else None
        return tuple((models.d_inputs(self.d_input(x, step, update=k, sub=sub, adaptive=adaptive), held),
                      losses.with_averages(targets, averages))
                     for k, (x, held, targets) in enumerate(d_batches(real, fake, plan, classes)))

    def g_inputs(self, z, fake, step, classes=None, adaptive=None):
        """What the train_on_batch loop's GAN model takes in the G update (models.build_models): z, then hack 21's
        classes of the fakes, then hack 20's draws for its D input (with hack 23, followed by which operations
        apply at the `adaptive` state's strength), then hack 14's noise on it (the G update's noise on zeros
        shaped like the fakes)."""
        h, key = self.cfg.hacks, self.key(step, None)
        inputs = [z] if classes is None else [z, classes]
        n = z.shape[0]
        if h.diff_augment:
            inputs.append(hacks.augment_draws(n, self.random(key, slot=AUGMENT_SLOT + G_UPDATE)))
        if h.adaptive_augment:
            gates = hacks.augment_gates(n, self.random(key, slot=GATE_SLOT + G_UPDATE, extra=True),
                                        hacks.augment_strength(adaptive, hacks=h))
            draws = hacks.augment_draws(n, self.random(key, slot=AUGMENT_SLOT + G_UPDATE))
            inputs.append(ops.concatenate([draws, gates], axis=1))  # (N, AUGMENT_DRAWS + AUGMENT_OPS)
        if h.instance_noise:
            zeros = ops.zeros_like(fake)
            inputs.append(hacks.instance_noise(zeros, self.random(key, slot=NOISE_SLOT + G_UPDATE), step, hacks=h))
        return inputs if len(inputs) > 1 else z

    def state(self, step: int) -> DrawState:
        return DrawState(seed=self.seed, step=step)


def d_sources(cfg: Config) -> list[tuple[str, ...]]:
    """Which sources each D update of a sub-step holds (hack 9): ("real",), ("fake",), or one mixed
    ("real", "fake")."""
    return [("real",), ("fake",)] if cfg.hacks.separate_batches else [("real", "fake")]


def d_plan(n: int, rng, *, cfg: Config) -> tuple[tuple, ...]:
    """The D updates of one step (hack 9) as (index into concat(real, fake), D's targets (len, 1)) pairs, with
    labels flipped (hack 11) and smoothed (hack 10)."""
    h = cfg.hacks
    plan = []
    for index in hacks.d_batch_plan(n, rng, hacks=h):
        is_real = index < n
        labels = hacks.smooth_labels(hacks.flip_labels(is_real, rng, hacks=h), rng, hacks=h)
        plan.append((index, losses.d_targets(labels, is_real)))
    return tuple(plan)


def d_batches(real, fake, plan: tuple, classes: tuple = (None, None)) -> tuple:
    """Each D update's (x, its classes or None, targets): x taken from the pool concat(real, fake) of model-range
    images (2N, H, W, C) by the plan's indices (d_plan), the fakes as they came (the compiled step detaches them
    first); with hack 21's `classes` (real's, fake's) the classes taken alike and appended to the targets."""
    pool = ops.concatenate([real, ops.cast(fake, real.dtype)], axis=0)
    if classes[0] is None:
        return tuple((ops.take(pool, index, axis=0), None, targets) for index, targets in plan)
    labels = ops.concatenate(classes, axis=0)  # (2N,)
    batches = []
    for index, targets in plan:
        held = ops.take(labels, index, axis=0)  # (len,)
        batches.append((ops.take(pool, index, axis=0), held, losses.with_class(targets, held)))  # (len, 3)
    return tuple(batches)


def g_targets(z, classes=None):
    """G's targets in the G update: 1 (N, 1), and with hack 21 the fakes' classes as a second column (N, 2)."""
    return losses.with_class(ops.ones((z.shape[0], 1), "float32"), classes)
