"""One DCGAN training step, defined once for the compiled loop on every backend. Per step (N = train.batch_size):

    for each of D's sub-steps (1, or 2 with hack 13):
        real  = a batch of the data, scaled to G's range           (N, H, W, C)
        z     = latents (hack 8), with their classes (hack 21)     (N, latent_dim)
        fake  = G(z) in training mode                              (N, H, W, C); the last sub-step keeps its vjp
        shown = fake, partly from the replay buffer (hack 22), detached
        for each D batch of the plan (hack 9: real then fake, or one mixed batch):
            x, y  = images (with noise, augmentation: 14, 20, 23) and targets (10, 11)     (N, ...), (N, 2)
            D    -= lr * grad of D's loss on (x, y) (+ R1 on reals, hack 18)                D's BatchNorm moves
    G -= lr * grad of G's loss through a frozen D, toward the label 1, on the same fake   via G's vjp, no G rerun
    then the moving average of G (train.ema_decay) and the adaptive state (hacks 23, 24) move

`StepBody` is that algorithm. What differs between backends is where the weights live, so the body asks an
adapter for G's forward pass, D's update and G's update: `PureWeights` threads them as values through a pure
function (JAX, jitted with the state on the device), `KerasWeights` updates the Keras variables in place
(TensorFlow's tf.function, torch). A new hack changes the body, and both follow.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import ops

from dcgan_cli.backend import forward_with_vjp, gradients, input_gradient, value_and_grad, vjp
from dcgan_cli.config import Config
from dcgan_cli.nets import hacks, losses
from dcgan_cli.nets.ema import assign_ema, ema_values
from dcgan_cli.nets.gradients import gradient_norm
from dcgan_cli.nets.models import Models, d_inputs, g_inputs
from dcgan_cli.state.draws import G_UPDATE, Draws, d_sources, g_targets
from dcgan_cli.training.monitor import METRICS


def d_metrics(found: dict, held: tuple[str, ...], metrics: dict) -> None:
    """Record D's loss, mean output and mean raw score on each source a batch holds (real, fake or both), and its
    mean sign on the real images; both loops keep D's metrics this way."""
    for source in held:
        for name in (f"d_loss_{source}", f"d_{source}_mean", f"d_{source}_score"):
            found[name] = metrics[name]
        if source == "real":
            found["d_real_sign"] = metrics["d_real_sign"]


def stacked(found: dict):
    """The step's metrics in METRICS order, (len(METRICS),) float32: what the loop sums on the device."""
    return ops.stack([ops.cast(found[key], "float32") for key in METRICS])


class StepBody:
    """The algorithm of the module docstring, over an adapter that holds the weights (PureWeights, KerasWeights)."""

    def __init__(self, cfg: Config, draws: Draws, *, resident: bool):
        self.draws, self.resident = draws, resident
        self.sources = d_sources(cfg)
        self.objective, self.hacks = hacks.objective(cfg.hacks), cfg.hacks
        self.batch_size = cfg.train.batch_size

    def __call__(self, weights, source, step) -> None:
        """Step `step` on the real images of `source` (the dataset on the device when `resident`, else this
        step's batch), through `weights`, which ends holding the weights and metric sums after it."""
        found = {}
        buffer, adaptive = weights.replay_buffer(), weights.adaptive_state()  # hacks 22, 23-24
        for sub in range(self.draws.d_steps):  # hack 13: D's sub-steps, each on its own batch, latents and labels
            real, z, plan, classes = self._inputs(source, step, sub)
            g_in = g_inputs(z, classes[1])
            if sub == self.draws.d_steps - 1:
                fake = weights.g_forward_kept(g_in)  # G forward once for the G update; its moving statistics move
            else:
                fake = weights.g_forward(g_in)

            # (1) Update D on each batch of the plan (hack 22: its fakes partly from the buffer of past ones).
            shown, shown_classes, buffer = self.draws.replay(ops.stop_gradient(fake), classes[1], buffer, step, sub)
            for (x, y), held in zip(self.draws.d_batches(real, shown, plan, step, sub, (classes[0], shown_classes),
                                                         adaptive), self.sources):
                x, x_classes = (x[0], x[1]) if isinstance(x, list) else (x, None)
                p = weights.update_d(lambda forward, x=x, y=y, held=held: self._d_loss(
                    forward, x, y, step, has_real="real" in held), x_classes)
                d_metrics(found, held, self.objective.d_metrics(y, p))

        # (2) Update G through a frozen D, toward the label 1 (never smoothed), on the same fakes.
        def g_loss(images, frozen_d: Callable):
            d_input = d_inputs(self.draws.d_input(images, step, update=G_UPDATE, adaptive=adaptive), classes[1])
            return ops.mean(self.objective.g_loss(g_targets(z, classes[1]), frozen_d(d_input)))

        found["g_loss"], found["g_grad_norm"] = weights.update_g(g_loss, fake)

        # (3) The moving average of G's weights moves; hacks 23 and 24 adapt to the step's D scores.
        weights.move_average(step)
        if adaptive is not None:
            adaptive = hacks.adapt(adaptive, found["d_real_sign"], found["d_real_score"], found["d_fake_score"], step,
                                   hacks=self.hacks, batch_size=self.batch_size)
        found["augment_p"] = hacks.augment_strength(adaptive, hacks=self.hacks)
        weights.finish(buffer, adaptive, stacked(found))

    def _inputs(self, source, step, sub: int):
        """The real batch in the model range, the latents, the D plan and (hack 21) the real and fake images'
        classes of the step's D sub-step `sub`, drawn on the device."""
        return (self.draws.real(source, step, resident=self.resident, sub=sub),
                *self.draws.latents_and_plan(step, sub),
                self.draws.classes_of(source, step, resident=self.resident, sub=sub))

    def _d_loss(self, forward, x, y, step, *, has_real: bool):
        """D's mean loss on a batch x with targets y, with hack 18's penalty on its real images when on and due,
        D's output and what forward(x) -> (output, aux) gave besides."""
        def plain():
            output, aux = forward(x)
            return ops.mean(self.objective.d_loss(y, output)), output, aux

        def penalised():
            def scores(images):
                output, aux = forward(images)
                return ops.sum(losses.score(output)), (output, aux)

            _, (output, aux), gradient = input_gradient(scores, x, differentiable=True)
            penalty = hacks.r1_penalty(gradient, y[:, 1], step, hacks=self.hacks)
            return ops.mean(self.objective.d_loss(y, output)) + penalty, output, aux

        if not (self.hacks.r1_penalty and has_real):
            return plain()
        if self.hacks.r1_every == 1:
            return penalised()
        return ops.cond(hacks.r1_due(step, hacks=self.hacks), penalised, plain)


class PureWeights:
    """JAX: the weights, optimizer slots, moving average, replay buffer, adaptive state and metric sums as values
    (`state`, a tuple), each update giving new ones; `state` holds the step's result at the end."""

    def __init__(self, models: Models, state: tuple, *, bn_batch_statistics: bool, ema_decay: float,
                 g_norm_index: int):
        self.models, self.bn_batch_statistics, self.ema_decay = models, bn_batch_statistics, ema_decay
        self.g_norm_index = g_norm_index
        (self.g_tv, self.g_ntv, self.d_tv, self.d_ntv, self.d_opt, self.g_opt, self.ema, self.replay, self.adaptive,
         self.sums) = state
        self.g_vjp = None

    @property
    def state(self) -> tuple:
        return (self.g_tv, self.g_ntv, self.d_tv, self.d_ntv, self.d_opt, self.g_opt, self.ema, self.replay,
                self.adaptive, self.sums)

    def replay_buffer(self):
        return tuple(self.replay) if self.replay else None

    def adaptive_state(self):
        return self.adaptive[0] if self.adaptive else None

    def g_forward(self, g_in):
        fake, _ = self.models.g.stateless_call(self.g_tv, self.g_ntv, g_in, training=True)
        return fake

    def g_forward_kept(self, g_in):
        g, ntv = self.models.g, self.g_ntv
        fake, self.g_vjp, self.g_ntv = vjp(lambda g_trainable: g.stateless_call(g_trainable, ntv, g_in, training=True),
                                           self.g_tv)
        return fake

    def update_d(self, d_loss: Callable, x_classes):
        d, optimizer = self.models.d, self.models.d.optimizer
        d_ntv, d_opt = self.d_ntv, self.d_opt

        def objective(d_trainable):
            def forward(images):
                return d.stateless_call(d_trainable, d_ntv, d_inputs(images, x_classes), training=True)

            loss, p, new_ntv = d_loss(forward)
            return _scaled(optimizer, d_opt, loss), (new_ntv, p)

        (_, (self.d_ntv, p)), grads = value_and_grad(objective)(self.d_tv)
        self.d_tv, self.d_opt = optimizer.stateless_apply(self.d_opt, grads, self.d_tv)
        return p

    def update_g(self, g_loss: Callable, fake) -> tuple:
        """D is only read: its variables as they are, its new statistics dropped."""
        d, optimizer = self.models.d, self.models.gan.optimizer

        def frozen_d(d_input):
            p, _ = d.stateless_call(self.d_tv, self.d_ntv, d_input, training=self.bn_batch_statistics)
            return p

        def objective(images):
            loss = g_loss(images, frozen_d)
            return _scaled(optimizer, self.g_opt, loss), loss

        _, loss, d_fake = input_gradient(objective, fake)
        (grads,) = self.g_vjp(d_fake)
        self.g_tv, self.g_opt = optimizer.stateless_apply(self.g_opt, grads, self.g_tv)
        return loss, self.g_opt[self.g_norm_index]

    def move_average(self, step) -> None:
        self.ema = ema_values(self.ema, self.g_tv, decay=self.ema_decay, step=step)

    def finish(self, buffer, adaptive, metrics) -> None:
        self.replay = list(buffer) if buffer is not None else []
        self.adaptive = [adaptive] if adaptive is not None else []
        self.sums = self.sums + metrics


def _scaled(optimizer, optimizer_values, loss):
    """The loss as `optimizer` scales it (mixed precision), with its variables at `optimizer_values`."""
    with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
        return optimizer.scale_loss(loss)


class KerasWeights:
    """TensorFlow and torch: the Keras variables themselves, updated in place as those optimizers require; the
    metric sums in `sums`."""

    def __init__(self, models: Models, sums: keras.Variable, *, ema_decay: float):
        self.models, self.sums, self.ema_decay = models, sums, ema_decay
        self.g_vjp = None

    def replay_buffer(self):
        return None if self.models.replay is None else self.models.replay.values()

    def adaptive_state(self):
        return None if self.models.adaptive is None else self.models.adaptive.value()

    def g_forward(self, g_in):
        g = self.models.g
        fake, _ = g.stateless_call([v.value for v in g.trainable_variables],
                                   [v.value for v in g.non_trainable_variables], g_in, training=True)
        return fake

    def g_forward_kept(self, g_in):
        g = self.models.g
        fake, self.g_vjp = forward_with_vjp(lambda: g(g_in, training=True), g.trainable_variables)
        return fake

    def update_d(self, d_loss: Callable, x_classes):
        d = self.models.d
        d.trainable = True

        def objective():
            loss, p, _ = d_loss(lambda images: (d(d_inputs(images, x_classes), training=True), None))
            return loss, p

        _, p, grads = gradients(objective, d.trainable_variables, d.optimizer)
        d.optimizer.apply(grads, d.trainable_variables)
        return p

    def update_g(self, g_loss: Callable, fake) -> tuple:
        """D frozen: its BatchNorm per model.d_bn_in_g_update, its moving statistics untouched."""
        d, g, optimizer = self.models.d, self.models.g, self.models.gan.optimizer
        d.trainable = False

        def objective(images):
            loss = g_loss(images, lambda d_input: d(d_input, training=True))
            return optimizer.scale_loss(loss), loss

        _, loss, d_fake = input_gradient(objective, fake)
        optimizer.apply(self.g_vjp(d_fake), g.trainable_variables)
        return loss, gradient_norm(optimizer).value

    def move_average(self, step) -> None:
        if self.models.g_ema is not None:
            assign_ema(self.models, decay=self.ema_decay, step=step)

    def finish(self, buffer, adaptive, metrics) -> None:
        if buffer is not None:
            self.models.replay.assign(buffer)
        if adaptive is not None:
            self.models.adaptive.assign(adaptive)
        self.sums.assign(self.sums.value + metrics)
