"""D's loss and per-source metrics as pure functions.

D's targets are (N, 2): column 0 is the label D is trained toward (smoothed, flipped), column 1 says where the
image came from (1 = the data, 0 = G). The loss reads only column 0; the metrics split by column 1, so a mixed
batch (hack 9 off) still reports D's loss and mean output on real and on fake images separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import ops


def d_targets(labels, is_real):
    """Stack labels (N, 1) and bool is_real (N,) into D's targets, float32 (N, 2)."""
    return ops.concatenate([ops.cast(labels, "float32"), ops.expand_dims(ops.cast(is_real, "float32"), 1)], axis=1)


def binary_crossentropy(y, s):
    """-(y log sigmoid(s) + (1 - y) log sigmoid(-s)) of D's raw scores s (N, 1) against targets y (N, 1), computed
    as softplus(s) - y s: per sample, (N,). Finite for every score and every label (smoothed real labels reach 1.2,
    hack 10), and its gradient sigmoid(s) - y never vanishes while D is wrong: a cross-entropy of probabilities
    clipped to [1e-7, 1 - 1e-7] has a gradient of exactly 0 once D is that sure, and G never learns again."""
    y = ops.convert_to_tensor(y, "float32")
    s = ops.cast(s, "float32")
    return ops.mean(ops.softplus(s) - y * s, axis=-1)


def d_loss(y, s):
    """D's loss: binary cross-entropy of D's raw scores s (N, 1) against the labels y[:, :1]: (N,)."""
    return binary_crossentropy(y[:, :1], s)


def g_loss(y, s):
    """G's non-saturating loss: binary cross-entropy of D's raw scores s (N, 1) on fakes against y[:, :1] = 1, which
    is softplus(-s), its gradient near -1 where D is sure a fake is fake (y is (N, 1), or (N, 2) with the fakes'
    classes in column 1): (N,)."""
    return binary_crossentropy(y[:, :1], s)


def score(output):
    """D's raw score (N, 1), float32, from its output (N, 1), or (N, 1 + K) with hack 21's class logits after it."""
    return ops.cast(output[:, :1], "float32")


def probability(output):
    """D's belief that an image is real, sigmoid of its raw score: (N, 1) in (0, 1), what D(x), D(G(z)), the
    monitor and the reports show."""
    return ops.sigmoid(score(output))


def _masked_mean(values, mask):
    """Mean of values (N,) where mask (N,) is 1; 0 when the mask is empty. Scalar."""
    mask = ops.convert_to_tensor(mask, "float32")
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


def hinge_d_loss(y, s):
    """D's hinge loss (Lim & Ye 2017) on raw scores s (N, 1) against the labels y[:, :1] (clipped to [0, 1]: a
    smoothed label above 1 counts as 1, where the hinge would reward unbounded scores): y max(0, 1 - s) +
    (1 - y) max(0, 1 + s), per sample (N,)."""
    y = ops.clip(ops.cast(y[:, :1], "float32"), 0.0, 1.0)
    s = ops.cast(s, "float32")
    return ops.mean(y * ops.relu(1.0 - s) + (1.0 - y) * ops.relu(1.0 + s), axis=-1)


def hinge_g_loss(y, s):
    """G's hinge loss: -s on D's raw scores of fakes (N, 1); y, always 1, is not used. Per sample (N,)."""
    return -ops.mean(ops.cast(s, "float32"), axis=-1)


@dataclass(frozen=True)
class Objective:
    """D's and G's losses over D's output, which begins with its raw score: the binary cross-entropy of the DCGAN,
    or the hinge loss (hack 17). Either way D's belief that an image is real is the score's sigmoid
    (`probability`), so D(x), D(G(z)) and the monitor read the same."""

    name: str
    d_loss: Callable  # (y (N, 2), output (N, 1)) -> (N,)
    g_loss: Callable  # (y (N, 1), output (N, 1)) -> (N,)

    def d_metrics(self, y, output) -> dict:
        """D's loss and mean belief on the real and on the fake images of a batch (y[:, 1] says which), its mean
        sign of the raw score on the real ones (ADA's overfitting measure r_t), and its mean raw score on each:
        scalars, in D_METRICS order."""
        loss, p, real = self.d_loss(y, output), probability(output)[:, 0], y[:, 1]
        s = score(output)[:, 0]
        return {"d_loss_real": _masked_mean(loss, real), "d_loss_fake": _masked_mean(loss, 1.0 - real),
                "d_real_mean": _masked_mean(p, real), "d_fake_mean": _masked_mean(p, 1.0 - real),
                "d_real_sign": _masked_mean(ops.sign(s), real), "d_real_score": _masked_mean(s, real),
                "d_fake_score": _masked_mean(s, 1.0 - real)}


def with_class(targets, classes):
    """Targets (N, T) with hack 21's classes (N,) as one more column (N, T + 1); unchanged when `classes` is None."""
    if classes is None:
        return targets
    return ops.concatenate([targets, ops.cast(classes, "float32")[:, None]], axis=1)


def class_cross_entropy(classes, logits):
    """-log softmax(logits)[class] of class logits (N, K) against class indices (N,) (any dtype): per sample (N,)."""
    logits = ops.cast(logits, "float32")
    picked = ops.one_hot(ops.cast(classes, "int32"), logits.shape[-1], dtype="float32")  # (N, K)
    return -ops.sum(picked * ops.log_softmax(logits, axis=-1), axis=-1)


def auxiliary(objective: Objective, *, weight: float) -> Objective:
    """`objective` for a D with an auxiliary classifier (AC-GAN): D's output (N, 1 + K) is its usual output, then K
    class logits. D's targets are (N, 3) (label, source, class), G's (N, 2) (1, class). D's loss adds `weight` times
    the logits' cross-entropy against the class on its real images only, G's on its fakes: trained on fakes too, as
    in Odena et al., D's head learned to read the class G was asked for from marks G left for it, and G's MNIST
    digits matched their class 14.9% of the time (3,000 steps); the head must stay a classifier of real images."""
    def aux_d_loss(y, output):
        real = ops.cast(y[:, 1], "float32")
        return objective.d_loss(y, output[:, :1]) + weight * real * class_cross_entropy(y[:, 2], output[:, 1:])

    def aux_g_loss(y, output):
        return objective.g_loss(y[:, :1], output[:, :1]) + weight * class_cross_entropy(y[:, 1], output[:, 1:])

    return Objective(f"{objective.name}+auxiliary", aux_d_loss, aux_g_loss)


def with_averages(targets, averages):
    """Targets (N, T) with hack 24's moving averages of D's raw scores on real and on fake images, (2,), as two more
    columns (N, T + 2); unchanged when `averages` is None."""
    if averages is None:
        return targets
    columns = ops.broadcast_to(ops.cast(averages, "float32")[None, :], (targets.shape[0], 2))
    return ops.concatenate([ops.cast(targets, "float32"), columns], axis=1)


def lecam(objective: Objective, *, weight: float) -> Objective:
    """`objective` with the LeCam regulariser (Tseng et al. 2021) in D's loss: D's targets end in the moving
    averages of its raw scores on real and on fake images (with_averages), and each sample adds `weight` times
    the squared distance of its raw score s to the other kind's average: (s - fake average)^2 for a real image
    (targets' column 1), (s - real average)^2 for a fake. G's loss is unchanged."""
    def lecam_d_loss(y, output):
        s = score(output)[:, 0]
        real = ops.cast(y[:, 1], "float32")
        distance = real * ops.square(s - y[:, -1]) + (1.0 - real) * ops.square(s - y[:, -2])
        return objective.d_loss(y, output) + weight * distance

    return Objective(f"{objective.name}+lecam", lecam_d_loss, objective.g_loss)


CROSS_ENTROPY = Objective("cross_entropy", d_loss, g_loss)
HINGE = Objective("hinge", hinge_d_loss, hinge_g_loss)
D_METRICS = ("d_loss_real", "d_loss_fake", "d_real_mean", "d_fake_mean", "d_real_sign", "d_real_score",
             "d_fake_score")


class DMetrics(keras.metrics.Metric):
    """D_METRICS of the last batch as one Keras metric with one variable (7,), its result a dict by name. Four
    function metrics would keep eight variables (a total and a count each) that every train_on_batch call resets
    and copies back: measured 0.60 -> 0.43 ms per D call on JAX, 1.03 -> 0.65 on TensorFlow (a tiny D, CPU).
    train_on_batch resets metrics before each call, so "the last batch" is what the four means reported."""

    def __init__(self, objective: Objective = CROSS_ENTROPY, name: str = "d_metrics", **kwargs):
        super().__init__(name=name, **kwargs)
        self.objective = objective
        self.values = self.add_variable(shape=(len(D_METRICS),), initializer="zeros", name="values")

    def update_state(self, y_true, y_pred, sample_weight=None):
        found = self.objective.d_metrics(y_true, y_pred)
        self.values.assign(ops.stack([ops.cast(found[name], "float32") for name in D_METRICS]))

    def result(self) -> dict:
        return {name: self.values[i] for i, name in enumerate(D_METRICS)}

    def reset_state(self) -> None:
        self.values.assign(ops.zeros((len(D_METRICS),)))
