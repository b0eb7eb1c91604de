"""train.loop: compiled — the train_on_batch loop's mathematics (training/steps.py's StepBody) as one compiled
function per step, and the state it keeps on the device between steps.

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

from dcgan_cli.backend import compile_function, distribute_batch, int32_argument, stateless_optimizers
from dcgan_cli.config import Config
from dcgan_cli.state.draws import Draws
from dcgan_cli.nets.gradients import gradient_norm
from dcgan_cli.nets.models import Models, build_optimizers
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.training.steps import KerasWeights, PureWeights, StepBody


class CompiledStep:
    """A whole training step (training/steps.py) as one compiled call; call it, then write_back() before reading
    the models."""

    def __init__(self, models: Models, cfg: Config, draws: Draws, *, resident: bool, jit_compile: bool = False):
        build_optimizers(models)
        models.d.trainable = True
        self.models = models
        self.body = StepBody(cfg, draws, resident=resident)
        self.bn_batch_statistics = cfg.model.d_bn_in_g_update == "batch"
        self.ema_decay = cfg.train.ema_decay
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

    def _pure_step(self, state, source, step):
        """JAX: the step as a pure function of the state."""
        weights = PureWeights(self.models, state, bn_batch_statistics=self.bn_batch_statistics,
                              ema_decay=self.ema_decay, g_norm_index=self.g_norm_index)
        self.body(weights, source, step)
        return weights.state

    def _stateful_step(self, source, step):
        """TensorFlow and torch: the step on the Keras variables, in place."""
        self.body(KerasWeights(self.models, self.sums, ema_decay=self.ema_decay), source, step)
