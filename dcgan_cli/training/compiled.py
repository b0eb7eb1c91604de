"""train.loop: compiled — the train_on_batch loop's mathematics as one compiled function per step.

Per step, as in loops.update_d and loops.update_g: D is updated on each batch of the hack-9 plan (all-real then
all-fake, or one mixed batch) with the same targets, then G is updated through D with D frozen (its BatchNorm on the
batch's own statistics, or its moving ones, as model.d_bn_in_g_update says) toward the label 1, on the same z.
As in the PyTorch reference, G runs forward once per step: its fakes feed the D updates (detached) and, kept under
autodiff, the G update, whose gradient flows back through that same forward pass (G's weights do not change in
between, so this is the train_on_batch loop's gradient without its second forward pass).

On JAX the step is pure (Keras' stateless_call and stateless_apply under jax.jit) and the state stays on the device
between steps, copied into the Keras variables only when a checkpoint, a sample grid or the end needs it. On
TensorFlow (tf.function, XLA if train.jit_compile) and torch (eager) the step updates the variables in place, as
their optimizers require. Either way the metric sums stay on the device until they are logged.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dcgan_cli.nets import hacks, losses
from dcgan_cli.backend import (compile_function, distribute_batch, forward_with_vjp, gradients, input_gradient,
                               int32_argument, stateless_optimizers, value_and_grad, vjp)
from dcgan_cli.config import Config
from dcgan_cli.state.draws import G_UPDATE, Draws, d_sources, g_targets
from dcgan_cli.nets.ema import assign_ema, ema_values
from dcgan_cli.nets.gradients import gradient_norm
from dcgan_cli.nets.models import Models, build_optimizers, d_inputs, g_inputs
from dcgan_cli.training.monitor import METRICS



def _d_metrics(found: dict, held: tuple[str, ...], metrics: dict) -> None:
    """Record D's loss, mean output and mean raw score on each source a batch holds (real, fake or both), and its
    mean sign on the real images."""
    for source in held:
        for name in (f"d_loss_{source}", f"d_{source}_mean", f"d_{source}_score"):
            found[name] = metrics[name]
        if source == "real":
            found["d_real_sign"] = metrics["d_real_sign"]


def _stack(found: dict):
    return ops.stack([ops.cast(found[key], "float32") for key in METRICS])


class CompiledStep:
    """A whole training step as one compiled call; call it, then write_back() before reading the models."""

    def __init__(self, models: Models, cfg: Config, draws: Draws, *, resident: bool, jit_compile: bool = False):
        build_optimizers(models)
        models.d.trainable = True
        self.models, self.draws, self.resident = models, draws, resident
        self.bn_batch_statistics = cfg.model.d_bn_in_g_update == "batch"
        self.sources = d_sources(cfg)
        self.objective, self.hacks = hacks.objective(cfg.hacks), cfg.hacks
        self.ema_decay = cfg.train.ema_decay
        self.batch_size = cfg.train.batch_size
        self.stateless = stateless_optimizers()
        if self.stateless:
            norm = gradient_norm(models.gan.optimizer)  # among its variables: the norm of its last gradients
            self.g_norm_index = next(i for i, v in enumerate(models.gan.optimizer.variables) if v is norm)
            self.state = self._read_state()
            self._step = compile_function(self._pure_step, donate_first=True)
        else:
            self.sums = keras.Variable(np.zeros(len(METRICS), np.float32), trainable=False, name="metric_sums")
            self._step = compile_function(self._stateful_step, jit_compile=jit_compile)

    def __call__(self, source, step: int) -> None:
        """Training step `step` on real images from `source`, uint8: the whole dataset on the device when the
        step was made `resident` (it gathers its batch itself), else this step's batch (N, H, W, C). The step
        draws its latents and labels itself (draws.Draws) and scales the images to the model range (hack 7)."""
        source, step = distribute_batch(source), int32_argument(step)
        if self.stateless:
            self.state = self._step(self.state, source, step)
        else:
            self._step(source, step)

    def take_metric_sums(self) -> dict[str, float]:
        """The metric sums since the last call, read back from the device, then reset to zero."""
        if self.stateless:
            sums = ops.convert_to_numpy(self.state[-1])
            self.state = (*self.state[:-1], ops.zeros_like(self.state[-1]))
        else:
            sums = ops.convert_to_numpy(self.sums.value)
            self.sums.assign(np.zeros(len(METRICS), np.float32))
        return dict(zip(METRICS, (float(v) for v in sums)))

    def write_back(self) -> None:
        """Make the Keras variables current (only the stateless JAX step keeps its state elsewhere)."""
        if not self.stateless:
            return
        for variables, values in zip(self._variable_groups(), self.state[:-1]):
            for variable, value in zip(variables, values):
                variable.assign(ops.copy(value))  # Keras' own jitted calls may donate the variables' buffers

    def _variable_groups(self) -> tuple[list, ...]:
        m = self.models
        m.d.trainable = True
        return (m.g.trainable_variables, m.g.non_trainable_variables, m.d.trainable_variables,
                m.d.non_trainable_variables, m.d.optimizer.variables, m.gan.optimizer.variables,
                m.g_ema.trainable_variables if m.g_ema is not None else [],
                m.replay.variables if m.replay is not None else [],
                m.adaptive.variables if m.adaptive is not None else [])

    def _read_state(self) -> tuple:
        groups = [[ops.copy(v.value) for v in variables] for variables in self._variable_groups()]
        return (*groups, ops.zeros((len(METRICS),), dtype="float32"))

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

    def _g_loss(self, output, z, classes):
        """G's loss, averaged: its objective on D's output for fakes, toward the label 1 (never smoothed; with hack
        21 the fakes' classes go with it, draws.g_targets). Scalar."""
        return ops.mean(self.objective.g_loss(g_targets(z, classes), output))

    def _inputs(self, source, step, sub: int):
        """The real batch in the model range, the latents, the D plan and (hack 21) the real and fake images'
        classes of the step's D sub-step `sub`, drawn on the device."""
        return (self.draws.real(source, step, resident=self.resident, sub=sub),
                *self.draws.latents_and_plan(step, sub),
                self.draws.classes_of(source, step, resident=self.resident, sub=sub))

    @staticmethod
    def _split(x):
        """A D batch's images and classes (None without hack 21)."""
        return (x[0], x[1]) if isinstance(x, list) else (x, None)

    def _pure_step(self, state, source, step):
        """JAX: the step as a pure function of the state."""
        g, d = self.models.g, self.models.d
        d_optimizer, g_optimizer = self.models.d.optimizer, self.models.gan.optimizer
        g_tv, g_ntv, d_tv, d_ntv, d_opt, g_opt, ema, replay, adaptive, sums = state
        buffer = tuple(replay) if replay else None  # hack 22
        adaptive_state = adaptive[0] if adaptive else None  # hacks 23, 24

        def scaled(optimizer, optimizer_values, loss):
            with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
                return optimizer.scale_loss(loss)

        found = {}
        for sub in range(self.draws.d_steps):  # hack 13: D's sub-steps, each on its own batch, latents and labels
            real, z, plan, classes = self._inputs(source, step, sub)
            g_in = g_inputs(z, classes[1])
            if sub == self.draws.d_steps - 1:
                # G forward once for the G update, in training mode; its moving statistics move here.
                fake, g_vjp, g_ntv = vjp(
                    lambda g_trainable, g_in=g_in: g.stateless_call(g_trainable, g_ntv, g_in, training=True), g_tv)
            else:
                fake, _ = g.stateless_call(g_tv, g_ntv, g_in, training=True)

            # (1) Update D on each batch of the plan (hack 22: its fakes partly from the buffer of past ones).
            shown, shown_classes, buffer = self.draws.replay(ops.stop_gradient(fake), classes[1], buffer, step, sub)
            for (x, y), held in zip(self.draws.d_batches(real, shown, plan, step, sub, (classes[0], shown_classes),
                                                         adaptive_state), self.sources):
                x, x_classes = self._split(x)

                def d_objective(d_trainable, x=x, x_classes=x_classes, y=y, d_ntv=d_ntv, d_opt=d_opt, held=held):
                    def forward(images):
                        return d.stateless_call(d_trainable, d_ntv, d_inputs(images, x_classes), training=True)

                    loss, p, new_ntv = self._d_loss(forward, x, y, step, has_real="real" in held)
                    return scaled(d_optimizer, d_opt, loss), (new_ntv, p)

                (_, (d_ntv, p)), grads = value_and_grad(d_objective)(d_tv)
                d_tv, d_opt = d_optimizer.stateless_apply(d_opt, grads, d_tv)
                _d_metrics(found, held, self.objective.d_metrics(y, p))

        # (2) Update G through a frozen D: D's variables are only read, its new statistics dropped.
        def fake_objective(images):
            d_input = d_inputs(self.draws.d_input(images, step, update=G_UPDATE, adaptive=adaptive_state), classes[1])
            p, _ = d.stateless_call(d_tv, d_ntv, d_input, training=self.bn_batch_statistics)
            loss = self._g_loss(p, z, classes[1])
            return scaled(g_optimizer, g_opt, loss), loss

        _, found["g_loss"], d_fake = input_gradient(fake_objective, fake)
        (grads,) = g_vjp(d_fake)
        g_tv, g_opt = g_optimizer.stateless_apply(g_opt, grads, g_tv)
        found["g_grad_norm"] = g_opt[self.g_norm_index]

        # (3) The moving average of G's weights, when kept; hacks 23 and 24 adapt to the step's D scores.
        ema = ema_values(ema, g_tv, decay=self.ema_decay, step=step)
        replay = list(buffer) if buffer is not None else []
        adaptive = [self._adapt(adaptive_state, found, step)] if adaptive else []
        found["augment_p"] = hacks.augment_strength(adaptive[0] if adaptive else None, hacks=self.hacks)
        return g_tv, g_ntv, d_tv, d_ntv, d_opt, g_opt, ema, replay, adaptive, sums + _stack(found)

    def _adapt(self, state, found: dict, step):
        """The adaptive state after the step (hacks.adapt), from D's sign and scores recorded in `found`."""
        return hacks.adapt(state, found["d_real_sign"], found["d_real_score"], found["d_fake_score"], step,
                           hacks=self.hacks, batch_size=self.batch_size)

    def _stateful_step(self, source, step):
        """TensorFlow and torch: the step on the Keras variables, in place."""
        g, d = self.models.g, self.models.d
        g_optimizer = self.models.gan.optimizer

        found = {}
        buffer = None if self.models.replay is None else self.models.replay.values()  # hack 22
        adaptive_state = None if self.models.adaptive is None else self.models.adaptive.value()  # hacks 23, 24
        for sub in range(self.draws.d_steps):  # hack 13: D's sub-steps, each on its own batch, latents and labels
            real, z, plan, classes = self._inputs(source, step, sub)
            g_in = g_inputs(z, classes[1])
            if sub == self.draws.d_steps - 1:
                # G forward once for the G update, in training mode; its moving statistics move here.
                fake, g_vjp = forward_with_vjp(lambda g_in=g_in: g(g_in, training=True), g.trainable_variables)
            else:
                fake, _ = g.stateless_call([v.value for v in g.trainable_variables],
                                           [v.value for v in g.non_trainable_variables], g_in, training=True)

            # (1) Update D on each batch of the plan (hack 22: its fakes partly from the buffer of past ones).
            d.trainable = True
            shown, shown_classes, buffer = self.draws.replay(ops.stop_gradient(fake), classes[1], buffer, step, sub)
            for (x, y), held in zip(self.draws.d_batches(real, shown, plan, step, sub, (classes[0], shown_classes),
                                                         adaptive_state), self.sources):
                x, x_classes = self._split(x)

                def d_objective(x=x, x_classes=x_classes, y=y, held=held):
                    loss, p, _ = self._d_loss(lambda images: (d(d_inputs(images, x_classes), training=True), None),
                                              x, y, step, has_real="real" in held)
                    return loss, p

                _, p, grads = gradients(d_objective, d.trainable_variables, d.optimizer)
                d.optimizer.apply(grads, d.trainable_variables)
                _d_metrics(found, held, self.objective.d_metrics(y, p))

        # (2) Update G through a frozen D (BatchNorm per model.d_bn_in_g_update, moving statistics untouched).
        d.trainable = False

        def fake_objective(images):
            d_input = d_inputs(self.draws.d_input(images, step, update=G_UPDATE, adaptive=adaptive_state), classes[1])
            loss = self._g_loss(d(d_input, training=True), z, classes[1])
            return g_optimizer.scale_loss(loss), loss

        _, found["g_loss"], d_fake = input_gradient(fake_objective, fake)
        g_optimizer.apply(g_vjp(d_fake), g.trainable_variables)
        found["g_grad_norm"] = gradient_norm(g_optimizer).value

        # (3) The moving average of G's weights, when kept.
        if self.models.g_ema is not None:
            assign_ema(self.models, decay=self.ema_decay, step=step)
        if buffer is not None:
            self.models.replay.assign(buffer)
        if adaptive_state is not None:
            adaptive_state = self._adapt(adaptive_state, found, step)
            self.models.adaptive.assign(adaptive_state)
        found["augment_p"] = hacks.augment_strength(adaptive_state, hacks=self.hacks)
        self.sums.assign(self.sums.value + _stack(found))
