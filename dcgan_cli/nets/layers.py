"""Custom Keras layers the models need beyond the stock ones."""

from __future__ import annotations

import zlib

import keras
from keras import ops

from dcgan_cli.backend import batch_statistics_norm, fuses_batch_norm
from dcgan_cli.config import AUGMENT_POLICY


@keras.saving.register_keras_serializable(package="dcgan_cli")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that can keep using batch statistics while frozen.

    Keras 3 switches a frozen BN (`trainable = False`) to its moving statistics even in a training-mode call. The
    DCGAN reference instead normalises D's input in the G update with that batch's own statistics. With
    `frozen_statistics="batch"`, a frozen layer called in training mode uses the batch's mean and variance and
    leaves its weights and moving statistics untouched; `"moving"` keeps Keras' behaviour.
    """

    def __init__(self, *, frozen_statistics: str = "batch", **kwargs):
        super().__init__(**kwargs)
        if frozen_statistics not in ("batch", "moving"):
            raise ValueError(f"frozen_statistics must be 'batch' or 'moving'. Received: {frozen_statistics!r}")
        self.frozen_statistics = frozen_statistics

    def call(self, inputs, training=None, mask=None):
        batch_statistics = training and (self.trainable or self.frozen_statistics == "batch") and mask is None
        if batch_statistics and fuses_batch_norm(inputs, self.axis):
            return self._fused(inputs)
        if not training or self.trainable or self.frozen_statistics == "moving" or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        rank = len(inputs.shape)
        axes = [axis for axis in range(rank) if axis != self.axis % rank]
        mean, variance = ops.moments(inputs, axes=axes)
        outputs = ops.batch_normalization(
            inputs,
            mean,
            variance,
            axis=self.axis,
            offset=ops.cast(self.beta, inputs.dtype) if self.center else None,
            scale=ops.cast(self.gamma, inputs.dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _fused(self, inputs):
        """The training-mode call on the batch's statistics as one fused op, the moving statistics moved as Keras
        moves them where the layer is trainable."""
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        outputs, mean, variance = batch_statistics_norm(
            inputs, ops.cast(self.gamma, inputs.dtype) if self.scale else None,
            ops.cast(self.beta, inputs.dtype) if self.center else None, epsilon=self.epsilon)
        if self.trainable:
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(ops.cast(moving, inputs.dtype) * self.momentum + batch * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "frozen_statistics": self.frozen_statistics}


@keras.saving.register_keras_serializable(package="dcgan_cli")
class MinibatchStdDev(keras.layers.Layer):
    """Karras et al. (2018): how much the batch varies, as one more feature map. Each feature's standard deviation
    over the batch at each position, averaged into one number that fills an extra channel: (N, H, W, C) ->
    (N, H, W, C + 1). A batch of identical fakes gets 0 there, which D learns to tell from real batches."""

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        spread = ops.mean(ops.sqrt(ops.var(x, axis=0) + 1e-8))  # scalar
        feature = ops.ones_like(x[..., :1]) * spread  # (N, H, W, 1)
        return ops.cast(ops.concatenate([x, feature], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="dcgan_cli")
class SpectralNorm(keras.layers.Wrapper):
    """Miyato et al. (2018): a Conv2D or Dense whose kernel is divided by its largest singular value, estimated by
    one power iteration per training-mode call. The trained variable stays the raw kernel and the division happens
    in the forward pass, so the gradient flows through it, and only the power iteration's vector u moves, only
    while the layer is trainable. keras.layers.SpectralNormalization instead writes the divided kernel back into the
    layer's variable in every training-mode call, frozen or not: D's weights would change in the G update."""

    def build(self, input_shape):
        super().build(input_shape)
        out = self.layer.kernel.shape[-1]
        seed = zlib.crc32(self.name.encode())  # a fixed start per layer, drawing nothing from the run's generators
        self.u = self.add_weight(shape=(1, out), initializer=keras.initializers.RandomNormal(seed=seed),
                                 trainable=False, name="u")

    def call(self, inputs, training=False):
        kernel = self.layer.kernel
        w = ops.reshape(ops.cast(kernel, "float32"), (-1, kernel.shape[-1]))  # (fan_in, out)
        v = _unit(ops.matmul(self.u, ops.transpose(w)))  # (1, fan_in)
        u = ops.stop_gradient(_unit(ops.matmul(v, w)))  # (1, out)
        v = ops.stop_gradient(v)
        sigma = ops.sum(ops.matmul(v, w) * u)  # the largest singular value's estimate, scalar
        if training and self.trainable:
            self.u.assign(u)
        kernel = ops.cast(ops.cast(kernel, "float32") / sigma, self.compute_dtype)
        return _apply(self.layer, ops.cast(inputs, self.compute_dtype), kernel)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def _unit(x):
    return x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-12)


def _apply(layer: keras.layers.Layer, inputs, kernel):
    """The wrapped Conv2D's or Dense's output with `kernel` in place of its own (it has no activation here)."""
    if isinstance(layer, keras.layers.Conv2D):
        out = ops.conv(inputs, kernel, strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                       dilation_rate=layer.dilation_rate)
    else:
        out = ops.matmul(inputs, kernel)
    if layer.use_bias:
        out = out + ops.cast(layer.bias, out.dtype)
    return out


AUGMENT_DRAWS = 7  # uniform draws per image: brightness, saturation, contrast, shift y, shift x, cutout y, x
AUGMENT_OPS = 5  # the operations hack 23 applies each with its probability: brightness, saturation, contrast,
#                  translation, cutout
TRANSLATION = 0.125  # DiffAugment's translation: up to this share of the side, each way
CUTOUT = 0.5  # DiffAugment's cutout: a square of this share of the side
POLICY_OPS = {"color": (0, 1, 2), "translation": (3,), "cutout": (4,)}  # each policy word's operations


def diff_augment(images, u, on=None, *, policy: tuple[str, ...] = AUGMENT_POLICY):
    """DiffAugment's colour, translation and cutout (Zhao et al. 2020) of images (N, H, W, C) in the model range,
    each image by its own uniform draws u (N, AUGMENT_DRAWS) in [0, 1): differentiable in the images, so G learns
    through it. Brightness + (u0 - 0.5); saturation x 2 u1 around the channel mean; contrast x (u2 + 0.5) around
    the image mean; a shift of up to TRANSLATION of the side with zeros coming in; a zeroed square of CUTOUT of
    the side centred anywhere. Only the operations of `policy`'s words (POLICY_OPS) run; with `on` (N, AUGMENT_OPS),
    1 or 0 (hack 23), an image gets each of them only where its column is 1. The draws are the same whatever the
    policy. Same shape, float32."""
    x = ops.cast(images, "float32")
    n, h, w, c = x.shape
    u = ops.cast(u, "float32")

    def column(k):
        return ops.reshape(u[:, k], (-1, 1, 1, 1))

    def gated(k, before, after):
        """Operation k's result where `on` has it, the image before it elsewhere."""
        if on is None:
            return after
        return ops.where(ops.reshape(on[:, k] > 0.5, (-1, 1, 1, 1)), after, before)

    if "color" in policy:
        x = gated(0, x, x + (column(0) - 0.5))
        mean = ops.mean(x, axis=-1, keepdims=True)
        x = gated(1, x, (x - mean) * (column(1) * 2.0) + mean)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = gated(2, x, (x - mean) * (column(2) + 0.5) + mean)

    def shifted(k, side):
        reach = int(side * TRANSLATION + 0.5)
        shift = ops.cast(ops.floor(u[:, k] * (2 * reach + 1)), "int32") - reach  # (N,) in [-reach, reach]
        source = ops.arange(side, dtype="int32")[None, :] - shift[:, None]  # (N, side): where each pixel comes from
        return ops.clip(source, 0, side - 1), ops.cast((source >= 0) & (source < side), "float32")

    if "translation" in policy:
        rows, row_ok = shifted(3, h)
        cols, col_ok = shifted(4, w)
        moved = ops.take_along_axis(x, ops.broadcast_to(ops.reshape(rows, (-1, h, 1, 1)), (n, h, w, c)), axis=1)
        moved = ops.take_along_axis(moved, ops.broadcast_to(ops.reshape(cols, (-1, 1, w, 1)), (n, h, w, c)), axis=2)
        x = gated(3, x, moved * ops.reshape(row_ok, (-1, h, 1, 1)) * ops.reshape(col_ok, (-1, 1, w, 1)))

    def outside(k, side):
        size = int(side * CUTOUT + 0.5)
        start = ops.cast(ops.floor(u[:, k] * (side + 1 - size % 2)), "int32") - size // 2  # (N,)
        index = ops.arange(side, dtype="int32")[None, :]
        return ops.logical_or(index < start[:, None], index >= start[:, None] + size)  # (N, side)

    if "cutout" in policy:
        keep = ops.logical_or(ops.reshape(outside(5, h), (-1, h, 1, 1)), ops.reshape(outside(6, w), (-1, 1, w, 1)))
        x = gated(4, x, x * ops.cast(keep, "float32"))
    return x


@keras.saving.register_keras_serializable(package="dcgan_cli")
class DiffAugment(keras.layers.Layer):
    """diff_augment as a layer of the train_on_batch loop's GAN model: [images, u] -> augmented images, by the
    operations of `policy`; with hack 23 u is (N, AUGMENT_DRAWS + AUGMENT_OPS), the draws and then which operations
    apply."""

    def __init__(self, *, policy: tuple[str, ...] = AUGMENT_POLICY, **kwargs):
        super().__init__(**kwargs)
        self.policy = tuple(policy)

    def call(self, inputs):
        images, u = inputs
        on = u[:, AUGMENT_DRAWS:] if u.shape[-1] > AUGMENT_DRAWS else None
        return ops.cast(diff_augment(images, u[:, :AUGMENT_DRAWS], on, policy=self.policy), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "policy": list(self.policy)}


@keras.saving.register_keras_serializable(package="dcgan_cli")
class SamplingDropout(keras.layers.Layer):
    """Dropout that stays on when sampling too (pix2pix's noise source): each call zeroes a `rate` share of the
    units and scales the rest by 1 / (1 - rate), in training and inference alike. Its masks come from the layer's
    own seeded generator, whose state is a variable of the model (checkpointed with it)."""

    def __init__(self, rate: float, *, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
