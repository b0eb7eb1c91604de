"""What the training monitor measures on the models themselves, without changing any variable: how varied G's
fixed-latent samples are compared with the real images, and the gradient norms of D's and G's losses."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from dcgan_cli.nets import hacks, losses
from dcgan_cli.backend import compile_function, input_gradient
from dcgan_cli.config import Config
from dcgan_cli.evaluate.stats import mean_pairwise_distance
from dcgan_cli.nets.gradients import global_norm
from dcgan_cli.nets.models import Classes, Models, d_inputs, g_inputs, generate
from dcgan_cli.state.draws import g_targets

REAL_IMAGES = 500  # real images whose mean pairwise distance the samples' is compared with
PROBE_STREAM = 3  # they are drawn by numpy's generator seeded with [train.seed, PROBE_STREAM]
GRADIENT_BATCH = 64  # real images and latents of the gradient probe


class Probe:
    """The monitor's measurements for one run: the samples' diversity on the sample grids' fixed latents, and the
    gradient norms on a fixed real batch and those latents (hard labels, BatchNorm as in training)."""

    def __init__(self, cfg: Config, real_images: np.ndarray, latents: np.ndarray, *, classes: Classes | None = None,
                 real_labels: np.ndarray | None = None, held_out: tuple | None = None):
        self.cfg, self.latents = cfg, latents
        rng = np.random.default_rng([cfg.train.seed, PROBE_STREAM])
        chosen = np.sort(rng.choice(len(real_images), min(REAL_IMAGES, len(real_images)), replace=False))
        real = np.asarray(real_images[chosen])
        self.real_distance = max(mean_pairwise_distance(real), 1e-12)
        self.real_batch = hacks.scale_images(real[:GRADIENT_BATCH], hacks=cfg.hacks)
        self.z = latents[:GRADIENT_BATCH]
        # Hack 21: the real images' own classes, and the latents' cycling through the classes.
        self.latent_classes = None if classes is None else classes.balanced(len(latents))
        self.real_classes = None if classes is None else real_labels[chosen][:GRADIENT_BATCH].astype(np.int32)
        self._norms: Callable | None = None
        # data.holdout: as many held-out real images as training ones (the first of the fixed real batch), with
        # their classes under hack 21, for D's output on each (holdout_gap).
        self.held_out = None
        if held_out is not None and held_out[0] is not None:
            n = min(len(held_out[0]), GRADIENT_BATCH)
            self.held_out = (hacks.scale_images(np.asarray(held_out[0][:n]), hacks=cfg.hacks),
                             None if classes is None else held_out[1][:n].astype(np.int32))
        self._outputs: Callable | None = None

    def __call__(self, models: Models) -> dict[str, float]:
        """{"diversity", "d_grad_norm", "g_grad_norm"} of the models' current variables, and with data.holdout
        "d_holdout_gap"."""
        found = {"diversity": self.diversity(models.g), **self.gradient_norms(models)}
        if self.held_out is not None:
            found["d_holdout_gap"] = self.holdout_gap(models)
        return found

    def holdout_gap(self, models: Models) -> float:
        """D's mean output (its belief that an image is real) on training images minus that on as many real images
        it never trained on (data.holdout), each batch on its own statistics as D sees real batches in training:
        near 0 while D judges the distribution, large once it has learnt its training images."""
        d = models.d
        if self._outputs is None:
            def outputs(d_tv, d_ntv, train, held, train_classes, held_classes):
                def mean(x, classes):
                    output, _ = d.stateless_call(d_tv, d_ntv, d_inputs(x, classes), training=True)
                    return ops.mean(losses.probability(output))
                return mean(train, train_classes) - mean(held, held_classes)

            self._outputs = compile_function(outputs)
        held, held_classes = self.held_out
        n = len(held)
        train_classes = None if self.real_classes is None else ops.convert_to_tensor(self.real_classes[:n])
        gap = self._outputs(_values(d.trainable_variables), _values(d.non_trainable_variables),
                            ops.convert_to_tensor(self.real_batch[:n]), ops.convert_to_tensor(held),
                            train_classes, None if held_classes is None else ops.convert_to_tensor(held_classes))
        return float(ops.convert_to_numpy(gap))

    def diversity(self, g: keras.Model) -> float:
        """G's samples' mean pairwise distance (inference mode, the fixed latents) as a share of the real
        images': about 1 for a generator as varied as the data, far below for a collapsed one."""
        return mean_pairwise_distance(generate(g, self.latents, self.cfg, self.latent_classes)) / self.real_distance

    def gradient_norms(self, models: Models) -> dict[str, float]:
        """The global L2 norms of the gradients of D's loss (an all-real and an all-fake batch, labels 1 and 0)
        over D's weights and of G's loss (through D, toward 1) over G's weights, by one compiled call (made at the
        first probe: run op by op, JAX compiled every operation of it on its own)."""
        g, d = models.g, models.d
        d.trainable = True  # its weights count as trainable for the probe; every update sets this itself
        if self._norms is None:
            self._norms = compile_function(self._pure_norms(models))
        d_norm, g_norm = self._norms(
            *(_values(variables) for variables in (g.trainable_variables, g.non_trainable_variables,
                                                   d.trainable_variables, d.non_trainable_variables)),
            ops.convert_to_tensor(self.real_batch), ops.convert_to_tensor(self.z),
            models.adaptive.value()[2:] if self.cfg.hacks.lecam else None,
            *([] if self.real_classes is None else [ops.convert_to_tensor(self.real_classes),
                                                    ops.convert_to_tensor(self.latent_classes[:len(self.z)])]))
        return {"d_grad_norm": float(ops.convert_to_numpy(d_norm)), "g_grad_norm": float(ops.convert_to_numpy(g_norm))}

    def _pure_norms(self, models: Models) -> Callable:
        """(G's and D's trainable and other values, a real batch, latents, hack 24's averages or None) -> the two
        gradients' global norms."""
        g, d = models.g, models.d
        d_training = self.cfg.model.d_bn_in_g_update == "batch"
        objective = hacks.objective(self.cfg.hacks)

        def norms(g_tv, g_ntv, d_tv, d_ntv, real, z, averages, real_classes=None, fake_classes=None):
            fake, _ = g.stateless_call(g_tv, g_ntv, g_inputs(z, fake_classes), training=True)

            def d_objective(values):
                loss = 0.0
                for x, classes, label in ((real, real_classes, 1.0), (ops.stop_gradient(fake), fake_classes, 0.0)):
                    p, _ = d.stateless_call(values, d_ntv, d_inputs(x, classes), training=True)
                    targets = losses.with_class(ops.full((x.shape[0], 2), label), classes)  # label, source(, class)
                    targets = losses.with_averages(targets, averages)  # hack 24: (..., real and fake average)
                    loss = loss + ops.mean(objective.d_loss(targets, p))
                return loss, None

            def g_objective(values):
                images, _ = g.stateless_call(values, g_ntv, g_inputs(z, fake_classes), training=True)
                p, _ = d.stateless_call(d_tv, d_ntv, d_inputs(images, fake_classes), training=d_training)
                return ops.mean(objective.g_loss(g_targets(z, fake_classes), p)), None

            return global_norm(input_gradient(d_objective, d_tv)[2]), global_norm(input_gradient(g_objective, g_tv)[2])

        return norms


def _values(variables: list) -> list:
    """The variables' current values as plain tensors (TensorFlow's mirrored variables cannot be watched)."""
    return [ops.copy(v.value) for v in variables]
