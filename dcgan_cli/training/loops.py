"""The two loops' steps: per step, (1) update D on real and fake images, (2) update G through a frozen D, on the
split train_on_batch loop (three Keras calls, its inputs made on the device by one compiled call) or as one
compiled function (training/compiled.py); and the train_on_batch loop's adapters for hacks 23-24 and the moving
average.

Keras 3 does not freeze D at compile time, so `d.trainable` is set before every update: True for D's own updates,
False for the G update (D's weights and moving statistics stay put while its BatchNorm, by default, still
normalises with the batch's own statistics; see layers.BatchNorm).
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from dcgan_cli import backend
from dcgan_cli.backend import compile_function
from dcgan_cli.config import Config
from dcgan_cli.nets import hacks
from dcgan_cli.nets.ema import assign_ema, ema_values
from dcgan_cli.nets.gradients import gradient_norm
from dcgan_cli.nets.models import AdaptiveState, Models, ReplayBuffer, build_optimizers, g_inputs
from dcgan_cli.state import draws
from dcgan_cli.training.feed import Feed
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.training.steps import d_metrics


def step_preparer(g: keras.Model, step_draws: draws.Draws, *, resident: bool,
                  replay: ReplayBuffer | None = None, adaptive: AdaptiveState | None = None) -> Callable:
    """The train_on_batch loop's inputs of a step as one compiled call on the device, (source, step) -> (D's
    batches, G's inputs): the real batch gathered and scaled, the latents and D's plan drawn, and G's fakes pooled
    with the real images into each D update's (x, targets) (Draws.d_batches; G's inputs: Draws.g_inputs; with
    hack 21 the classes of both go with them, and G's targets carry the fakes' classes). G runs
    in training mode (batch statistics, as in the DCGAN reference) and statelessly: its moving statistics move
    once per step, in the G update on the same z. With hack 22 D's fakes come partly from `replay`, which the call
    then updates; hacks 23 and 24 read the `adaptive` state (the augmentation's strength, LeCam's averages)."""
    def prepare(trainable, non_trainable, source, step, buffer, state):
        batches = ()
        for sub in range(step_draws.d_steps):  # hack 13: each D sub-step its own batch, latents and labels
            real = step_draws.real(source, step, resident=resident, sub=sub)
            z, plan = step_draws.latents_and_plan(step, sub)
            classes = step_draws.classes_of(source, step, resident=resident, sub=sub)  # hack 21: (real, fake)
            fake, _ = g.stateless_call(trainable, non_trainable, g_inputs(z, classes[1]), training=True)
            shown, shown_classes, buffer = step_draws.replay(fake, classes[1], buffer, step, sub)  # hack 22
            batches += step_draws.d_batches(real, shown, plan, step, sub, (classes[0], shown_classes), state)
        return (batches, step_draws.g_inputs(z, fake, step, classes[1], state), draws.g_targets(z, classes[1]),
                buffer)

    compiled = compile_function(prepare)

    def call(source, step: int) -> tuple:
        trainable = [v.value for v in g.trainable_variables]
        non_trainable = [v.value for v in g.non_trainable_variables]
        buffer = None if replay is None else replay.values()
        state = None if adaptive is None else adaptive.value()
        *inputs, buffer = compiled(trainable, non_trainable, backend.distribute_batch(source),
                                   backend.int32_argument(step), buffer, state)
        if replay is not None:
            replay.assign(buffer)
        return tuple(inputs)

    return call


def update_d(models: Models, batches: tuple, *, cfg: Config) -> dict[str, float]:
    """(1) Update D on each of the step's batches (x, targets) (Draws.d_batches): all-real then all-fake, or one
    mixed batch (hack 9), with labels smoothed (hack 10) and flipped (hack 11), for each of its D sub-steps (hack
    13). Returns D's loss, mean output and mean raw score per source and its mean sign on reals (the last
    sub-step's)."""
    models.d.trainable = True
    logs: dict[str, float] = {}
    for (x, targets), held in zip(batches, draws.d_sources(cfg) * hacks.d_steps(cfg.hacks), strict=True):
        d_metrics(logs, held, models.d.train_on_batch(x, targets, return_dict=True))
    return logs


def update_g(models: Models, inputs, targets) -> tuple[float, float]:
    """(2) Update G on latents z (N, latent_dim), or [z, the fakes' classes (hack 21), hack 20's draws, the noise
    on D's input (hack 14)] (Draws.g_inputs), through a frozen D, toward D's "real" label (always 1, never
    smoothed; `targets`, draws.g_targets). Returns G's loss and its gradient's global norm
    (gradients.keeping_gradient_norm)."""
    models.d.trainable = False
    loss = models.gan.train_on_batch(inputs, targets, return_dict=True)["loss"]
    return loss, float(gradient_norm(models.gan.optimizer).numpy())


def train_step(models: Models, batches: tuple, g_inputs, g_targets, *, cfg: Config) -> dict[str, float]:
    """One step on its D batches and G's inputs and targets (step_preparer): (1) update D, (2) update G on the
    same z. The augmentation strength is hack 20's or 0; hack 23's comes from adapter()."""
    logs = update_d(models, batches, cfg=cfg)
    logs["g_loss"], logs["g_grad_norm"] = update_g(models, g_inputs, g_targets)
    logs["augment_p"] = 0.0 if cfg.hacks.adaptive_augment else hacks.augment_strength(None, hacks=cfg.hacks)
    return {key: float(logs[key]) for key in (*METRICS, "d_real_score", "d_fake_score")}


def adapter(models: Models, cfg: Config) -> Callable[[dict, int], float] | None:
    """Hacks 23 and 24 in the train_on_batch loop: after step `step`, the adaptive state moves with D's signs and
    scores on the step's batches (hacks.adapt) in one compiled call on the device; returns the new strength.
    None without either hack."""
    if models.adaptive is None:
        return None
    h, batch_size = cfg.hacks, cfg.train.batch_size
    compiled = compile_function(lambda state, sign, real, fake, step: hacks.adapt(
        state, sign, real, fake, step, hacks=h, batch_size=batch_size))

    def adapt(logs: dict, step: int) -> float:
        state = compiled(models.adaptive.value(), np.float32(logs["d_real_sign"]), np.float32(logs["d_real_score"]),
                         np.float32(logs["d_fake_score"]), backend.int32_argument(step))
        models.adaptive.assign(state)
        return float(hacks.augment_strength(keras.ops.convert_to_numpy(state), hacks=h))

    return adapt


def ema_updater(models: Models, *, decay: float) -> Callable[[int], None]:
    """The train_on_batch loop's moving average: after step `step`, g_ema's weights move toward G's
    (ema.ema_values) in one compiled call; JAX computes the new values there and assigns them after."""
    if not backend.stateless_optimizers():
        compiled = compile_function(lambda step: assign_ema(models, decay=decay, step=step))
        return lambda step: compiled(backend.int32_argument(step))
    averages, values = models.g_ema.trainable_variables, models.g.trainable_variables
    blend = compile_function(lambda a, v, step: ema_values(a, v, decay=decay, step=step))

    def update(step: int) -> None:
        new = blend([a.value for a in averages], [v.value for v in values], backend.int32_argument(step))
        for average, value in zip(averages, new):
            average.assign(value)

    return update


class SplitLoop:
    """train.loop: train_on_batch. Losses come back as Python numbers at every step anyway, so they are checked
    at every step. A step's inputs are made on the device by one compiled call (step_preparer), so what remains per
    step is the three Keras calls."""

    reads_every_step = True

    def __init__(self, models: Models, cfg: Config, images: np.ndarray, step_draws: draws.Draws,
                 labels: np.ndarray | None):
        # Built before the first update: TensorFlow would otherwise trace each update twice, once to create the
        # optimizers' slots and once more without (half a second each on a small model).
        build_optimizers(models)
        self.models, self.cfg = models, cfg
        self.feed = Feed(images, step_draws, cfg=cfg, labels=labels)
        self.prepare = step_preparer(models.g, step_draws, resident=self.feed.resident, replay=models.replay,
                                     adaptive=models.adaptive)
        self.adapt = adapter(models, cfg)
        self.update_ema = ema_updater(models, decay=cfg.train.ema_decay) if models.g_ema is not None else None
        self.sums = dict.fromkeys(METRICS, 0.0)

    def step(self, step: int) -> None:
        batches, g_inputs, g_targets = self.prepare(self.feed(step), step)
        logs = train_step(self.models, batches, g_inputs, g_targets, cfg=self.cfg)
        if self.adapt is not None:
            logs["augment_p"] = self.adapt(logs, step)
        if self.update_ema is not None:
            self.update_ema(step)
        for key in METRICS:
            self.sums[key] += logs[key]

    def take_sums(self) -> dict[str, float]:
        sums, self.sums = self.sums, dict.fromkeys(METRICS, 0.0)
        return sums

    def sync(self) -> None:
        """The Keras variables are always current in this loop."""

    def close(self) -> None:
        self.feed.close()


class CompiledLoop:
    """train.loop: compiled. The state stays on the device; sums are read back only when needed. The step gathers
    its batch from the resident dataset (or takes the streamed one), scales it and draws its latents and labels
    itself, from the same generator as the train_on_batch loop."""

    reads_every_step = False

    def __init__(self, models: Models, cfg: Config, images: np.ndarray, step_draws: draws.Draws,
                 labels: np.ndarray | None):
        from dcgan_cli.training.compiled import CompiledStep

        self.feed = Feed(images, step_draws, cfg=cfg, labels=labels)
        self.compiled = CompiledStep(models, cfg, step_draws, resident=self.feed.resident,
                                     jit_compile=backend.use_xla(cfg.train.jit_compile))

    def step(self, step: int) -> None:
        self.compiled(self.feed(step), step)

    def take_sums(self) -> dict[str, float]:
        return self.compiled.take_metric_sums()

    def sync(self) -> None:
        self.compiled.write_back()

    def close(self) -> None:
        self.feed.close()
