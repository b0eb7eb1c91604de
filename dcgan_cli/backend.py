"""The few places where the Keras backend matters; nothing else imports a backend library directly."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import keras
import numpy as np

from dcgan_cli.config import ConfigError
from dcgan_cli.machine import this_cpu


def compile_function(fn: Callable, *, jit_compile: bool = False, donate_first: bool = False) -> Callable:
    """Compile a pure tensor function for the active backend: tf.function (XLA when jit_compile), jax.jit, or
    eager without autograd on torch. JAX, donate_first: the first argument's buffers are reused for the result
    (a training state replaced by each call), so the device holds one copy of it, not two."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        # Grappler's remapper fails on the gradient of a biased convolution followed by LeakyReLU (D's first layer)
        # and logs an "E0000 ... remapper failed" line on a healthy run (a TensorFlow bug); with it off, the step
        # runs as it did after the failure, unfused (docs/loops.md: Quiet logs).
        tf.config.optimizer.set_experimental_options({"remapping": False})
        # No autograph: the function is plain tensor code that jax.jit also traces, and converting it first cost
        # 2.5 s of a 9 s first step with every hack on.
        return tf.function(fn, reduce_retracing=True, jit_compile=jit_compile, autograph=False)
    if name == "jax":
        import jax

        if donate_first:  # kept even where unused (a value the step only overwrites, G's gradient norm): a pruned
            #               argument's buffer would not be donated and would stay beside its replacement
            return jax.jit(fn, donate_argnums=(0,), keep_unused=True)
        return jax.jit(fn)
    if name == "torch":
        import torch

        return torch.no_grad()(fn)
    return fn


def int32_argument(value: int):
    """An int32 scalar argument of a compiled function (a step number): a NumPy scalar on JAX, which jax.jit takes
    without a conversion call (a converted tensor costs about five times as much per call), a tensor elsewhere
    (tf.function would trace again for every new Python number)."""
    if keras.backend.backend() == "jax":
        return np.int32(value)
    return keras.ops.convert_to_tensor(value, "int32")


def use_xla(setting: str) -> bool:
    """train.jit_compile for TensorFlow: "on", "off", or "auto" (on where TensorFlow sees a GPU)."""
    if setting != "auto":
        return setting == "on"
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def stateless_optimizers() -> bool:
    """Whether optimizers can run statelessly (JAX); TensorFlow's and torch's update their variables in place."""
    return keras.backend.backend() == "jax"


def gradients(loss_fn: Callable, variables: list, optimizer: keras.optimizers.Optimizer):
    """loss_fn() -> (loss, aux) run under autodiff; returns (loss, aux, gradients of the optimizer-scaled loss with
    respect to the Keras `variables`). Stateful backends only: TensorFlow (inside tf.function) and torch."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
            scaled = optimizer.scale_loss(loss)
        return loss, aux, tape.gradient(scaled, [v.value for v in variables])
    if name == "torch":
        import torch

        for v in variables:
            v.value.grad = None
        with torch.enable_grad():
            loss, aux = loss_fn()
            optimizer.scale_loss(loss).backward()
        return loss.detach(), aux, [v.value.grad for v in variables]
    raise NotImplementedError(f"use the stateless step on this backend. Received: {name!r}")


def forward_with_vjp(fn: Callable, variables: list):
    """Run fn() -> tensor once under autodiff and return (output, vjp), where vjp(cotangent) gives the gradients
    of the output, weighted by the cotangent, with respect to the Keras `variables` (TensorFlow inside
    tf.function, and torch): the output can be used, detached, before its gradients are wanted."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            output = fn()
        return output, lambda cotangent: tape.gradient(output, [v.value for v in variables],
                                                       output_gradients=cotangent)
    if name == "torch":
        import torch

        with torch.enable_grad():
            output = fn()
        return output.detach(), lambda cotangent: list(torch.autograd.grad(output, [v.value for v in variables],
                                                                           grad_outputs=cotangent))
    raise NotImplementedError(f"use jax.vjp on this backend. Received: {name!r}")


def input_gradient(fn: Callable, x, *, differentiable: bool = False):
    """fn(x) -> (loss, aux); returns (loss, aux, d loss / d x) for one input tensor, or a list of tensors and the
    list of their gradients (all backends). `differentiable` keeps torch's graph of the gradient, for a loss that
    contains it (JAX and TensorFlow tapes nest as they are)."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        (loss, aux), grad = jax.value_and_grad(fn, has_aux=True)(x)
        return loss, aux, grad
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, aux = fn(x)
        return loss, aux, tape.gradient(loss, x)
    if name == "torch":
        import torch

        many = isinstance(x, list)
        inputs = [(t if differentiable else t.detach()).requires_grad_(True) for t in (x if many else [x])]
        with torch.enable_grad():
            loss, aux = fn(inputs if many else inputs[0])
            grads = list(torch.autograd.grad(loss, inputs, create_graph=differentiable))
        return (loss if differentiable else loss.detach()), aux, grads if many else grads[0]
    raise NotImplementedError(f"no gradient support for this Keras backend. Received: {name!r}")


def value_and_grad(fn: Callable) -> Callable:
    """JAX: fn(params, *args) -> (value, aux) becomes params -> ((value, aux), gradients)."""
    import jax

    return jax.value_and_grad(fn, has_aux=True)


def vjp(fn: Callable, params):
    """JAX: fn(params) -> (output, aux) evaluated once; returns (output, vjp_fn, aux), vjp_fn(cotangent) giving
    (gradients with respect to params,)."""
    import jax

    return jax.vjp(fn, params, has_aux=True)


UNKNOWN_DEVICE_MEMORY = 8 * 2**30  # assumed where the backend does not say (TensorFlow on a GPU)


def device_memory() -> int:
    """Bytes of memory of the first device: the accelerator's (JAX's memory_stats, torch.cuda), else this
    machine's RAM; UNKNOWN_DEVICE_MEMORY where the backend does not tell."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"])
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(0).total_memory)
    elif name == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return UNKNOWN_DEVICE_MEMORY
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def place_dataset(images, *, fraction: float):
    """The uint8 dataset as one tensor on the device when it takes at most `fraction` of the device's memory and
    no data-parallel distribution splits the batches; else None (each step then sends its batch)."""
    distributed = keras.backend.backend() == "jax" and keras.distribution.distribution() is not None
    if distributed or fraction <= 0 or images.nbytes > fraction * device_memory():
        return None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return None
    return keras.ops.convert_to_tensor(np.asarray(images))


def local_devices() -> list[str]:
    """The accelerators of this machine, else its CPUs (several when split into virtual devices for testing)."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
    if name == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    return keras.distribution.list_devices()


def split_cpu(count: int) -> None:
    """TensorFlow: present the CPU as `count` logical devices (must run before TensorFlow starts its devices);
    JAX reads --xla_force_host_platform_device_count from XLA_FLAGS instead."""
    if keras.backend.backend() == "tensorflow" and count > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


@contextmanager
def data_parallel(enabled: bool, *, batch_size: int) -> Iterator[int]:
    """While entered, models built and trained are replicated over every local device and each batch is split
    among them (JAX: keras.distribution.DataParallel; TensorFlow: tf.distribute.MirroredStrategy). Yields the
    number of devices (1 when not enabled)."""
    if not enabled:
        yield 1
        return
    name = keras.backend.backend()
    if name not in ("jax", "tensorflow"):
        raise ConfigError([f"train.distribution: data_parallel needs the JAX or TensorFlow backend. Received: {name}"])
    devices = local_devices()
    if batch_size % len(devices):
        raise ConfigError([f"train.batch_size: expected a multiple of the {len(devices)} devices "
                           f"({', '.join(devices)}), so that each gets an equal share. Received: {batch_size}"])
    if name == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(None)
        return
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(devices=devices).scope():
        yield len(devices)


def distribute_batch(x):
    """Place a batch (first axis split over the devices) when a JAX data-parallel distribution is active; a tuple
    (images, labels) element by element."""
    if isinstance(x, tuple):
        return tuple(distribute_batch(part) for part in x)
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return keras.ops.convert_to_tensor(x)
    return keras.distribution.distribute_tensor(x, distribution.get_data_layout(x.shape))


def fuses_batch_norm(inputs, axis: int) -> bool:
    """Whether batch_statistics_norm runs as one fused op here: TensorFlow, images (N, H, W, C) normalised over C."""
    rank = len(inputs.shape)
    return keras.backend.backend() == "tensorflow" and rank == 4 and axis % rank == 3


def batch_statistics_norm(inputs, scale, offset, *, epsilon: float):
    """BatchNormalization in training mode on TensorFlow as one op (FusedBatchNormV3, and FusedBatchNormGradV3 for
    its gradient; oneDNN's on a CPU) instead of Keras' moments and batch_normalization, about ten ops each way:
    inputs float32 (N, H, W, C), scale and offset (C,) or None; returns (outputs, the batch's mean (C,), its
    variance (C,) as Keras' moments gives it: over the N * H * W values, not Bessel-corrected)."""
    import tensorflow as tf

    channels = inputs.shape[-1]
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=tf.ones((channels,)) if scale is None else scale,
        offset=tf.zeros((channels,)) if offset is None else offset, mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=epsilon, exponential_avg_factor=1.0, data_format="NHWC",
        is_training=True)
    count = tf.cast(tf.size(inputs) // channels, tf.float32)
    return outputs, mean, variance * (count - 1.0) / count  # the op's variance is Bessel-corrected


def on_cpu() -> bool:
    """Whether the backend computes on this machine's CPU (it sees no GPU or TPU)."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")
    if name == "jax":
        import jax

        return jax.devices()[0].platform == "cpu"
    if name == "torch":
        import torch

        return not torch.cuda.is_available()
    return True


def _capability(text) -> tuple[int, ...]:
    """A CUDA compute capability ("8.6", (8, 6)) as a tuple; (99,) where it is not one (a ROCm GPU's gfx name: the
    GPUs JAX and ROCm run on compute bfloat16)."""
    try:
        return tuple(int(part) for part in (text.split(".") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        return (99,)


def native_bfloat16() -> bool:
    """Whether the device computes bfloat16 in hardware: a TPU, a GPU of CUDA compute capability 8.0 or more, a CPU
    with AVX-512 BF16 or AMX (machine.Cpu.native_bfloat16)."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "tpu":
            return True
        if device.platform == "gpu":
            return _capability(getattr(device, "compute_capability", "")) >= (8, 0)
    elif name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return _capability(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")) >= (8, 0)
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
    return this_cpu().native_bfloat16


def resolve_precision(setting: str) -> str:
    """train.mixed_precision as a run computes it: auto becomes bfloat16 where the device computes it natively
    (native_bfloat16), else off (float32); the other settings are themselves."""
    if setting != "auto":
        return setting
    return "bfloat16" if native_bfloat16() else "off"


def emulated_bfloat16(mode: str) -> str | None:
    """A one-line warning when bfloat16 is asked for on a CPU that emulates it, else None."""
    if mode != "bfloat16" or not on_cpu() or native_bfloat16():
        return None
    cpu = this_cpu()
    return (f"warning: train.mixed_precision: this CPU has no bfloat16 arithmetic (no avx512_bf16 or amx_bf16); on "
            f"such a CPU{' with' if 'avx512f' in cpu.flags else ' without'} AVX-512 float32 trained "
            f"{cpu.bfloat16_slowdown:g}x faster (docs/loops.md#precision): set auto or off. Received: bfloat16")


@contextmanager
def precision(mode: str) -> Iterator[None]:
    """Layers created while entered compute in bfloat16 or float16 (mixed precision), variables staying float32;
    `off` changes nothing. The global policy is restored afterwards."""
    previous = keras.config.dtype_policy()
    if mode != "off":
        keras.config.set_dtype_policy(f"mixed_{mode}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
