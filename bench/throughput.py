"""Training throughput of the DCGAN-32 and DCGAN-64 architectures on random in-memory data, through the product's
own loops (train_on_batch, compiled) and two peer loops written here on the same G and D: the seed-style Keras loop
(G.predict, then D.train_on_batch on real, D.train_on_batch on fake, GAN.train_on_batch) and keras.io's DCGAN
(a keras.Model's train_step under fit(): D on one batch of fakes and reals, then G, each under a tf.GradientTape).
Warm-up steps are not timed.

    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled [--precision bfloat16] [--steps N]
    python bench/throughput.py --arch dcgan32 --batch 64 --compare --peer ../shared/peers/torch_loop.py --rounds 5
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --profile      # the step by its parts
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --breakdown    # host, step, full step
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --cli          # `dcgan train` itself
    python bench/throughput.py --arch dcgan64 --batch 64 --loop compiled --peer ../shared/peers/torch_loop.py
    python bench/throughput.py --arch dcgan64 --batch 64 --loop compiled --against a0a2c22   # this tree vs a commit
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --onednn    # TensorFlow's oneDNN on vs off

One measurement prints one JSON line. --compare measures the product's loops and the peers (the seed loop,
keras.io's train_step and, with --peer, the pytorch/examples loop) and prints the medians, their ratios to the best
peer and every round's figure, under a line naming the CPU, its deciding flags and whether oneDNN ran.
--profile (TensorFlow) runs the steps under TensorFlow's profiler and sums each op's own time by the part of the
step it belongs to (convolutions, dense layers, batch norm, the optimizer, the random draws and batch,
activations, other) and the compute threads' idle time, in ms of thread time per step, with the costliest op types.
--breakdown times, per step: host_ms, what the host does before the step's compiled work (the step number and the
source handed over; the draws, the gather and the scaling happen on the device), the step alone on inputs already
on the device (compiled loop) or its parts (train_on_batch: inputs_ms, the compiled call that makes the step's
inputs and G's fakes on the device, then the D updates and the G update, each waited for), the full step as
`dcgan train` runs it, and where the dataset is streamed, prefetch_ms, the thread's work per batch (indices drawn,
images gathered and sent) that overlaps the step before. --cli runs `dcgan train` as a user does and reads images/s
from its metrics.jsonl (the first log window, which includes compilation, left out). --arch tiny (8x8 images,
4 filters) is a step so small that the loop's own overhead is most of it: a CPU's stand-in for what a fast GPU
leaves of a step; --arch dcgan64-narrow is DCGAN-64 at a quarter of its widths (ngf = ndf = 16), the same depth;
--set SECTION.KEY=VALUE changes the config on top of the architecture (a study trial's hacks, model.channels=3).
--peer PATH measures the pytorch/examples loop (the file ../shared/peers/torch_loop.py) at the same architecture and
batch beside the product's loop, --against REV the product's loop with the code of git revision REV beside this
tree's, --onednn this tree with TensorFlow's oneDNN kernels on and off (TF_ENABLE_ONEDNN_OPTS): each
measurement in a fresh process, --rounds interleaved rounds, medians and the ratio to the first; --threads N runs
each side on N compute threads (1: a study's worker). keras.io's loop is timed inside one fit() from the end of its
last warm-up batch, so fit()'s start, a cost of each epoch, is not charged to its steps.
The backend is Keras' (KERAS_BACKEND=tensorflow|jax|torch; keras.io's loop and --profile need TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from dcgan_cli import backend  # noqa: E402
from dcgan_cli.ablate.executors import cores, thread_env  # noqa: E402
from dcgan_cli.backend import distribute_batch  # noqa: E402
from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.data import sources  # noqa: E402
from dcgan_cli.nets import hacks  # noqa: E402
from dcgan_cli.nets.models import Classes, build_models  # noqa: E402
from dcgan_cli.state import draws  # noqa: E402
try:
    from dcgan_cli import machine  # noqa: E402
except ImportError:  # --against a revision from before dcgan_cli/machine.py: only the parent prints the table
    machine = None
try:
    from dcgan_cli.training import loops  # noqa: E402
    SPLIT_LOOP, COMPILED_LOOP = loops.SplitLoop, loops.CompiledLoop
except ImportError:  # --against a revision from before training/loops.py
    from dcgan_cli.training import train as loops  # noqa: E402
    SPLIT_LOOP, COMPILED_LOOP = loops._SplitLoop, loops._CompiledLoop

# ngf = ndf = 64, BatchNorm, LeakyReLU 0.2 in D and ReLU in G, N(0, 0.02), 4x4 kernels, Adam(2e-4, 0.5); no bias
# where batch norm follows (D's first and G's last convolution keep theirs).
DCGAN = ["model.g_filters=64", "model.d_filters=64", "model.max_filters=512"]
ARCHS = {
    "dcgan32": ["model.image_size=32", "model.channels=1", *DCGAN],
    "dcgan64": ["model.image_size=64", "model.channels=3", *DCGAN],
    "dcgan64-narrow": ["model.image_size=64", "model.channels=3", "model.g_filters=16", "model.d_filters=16",
                       "model.max_filters=128"],
    "tiny": ["model.image_size=8", "model.channels=1", "model.g_filters=4", "model.d_filters=4", "model.latent_dim=8"],
}
LOOPS = ("reference", "keras.io", "train_on_batch", "compiled")
TORCH_PEER = "pytorch/examples"
CORES = cores()
PEERS = ("reference", "keras.io", TORCH_PEER)  # the loops the product's are measured against
ROOT = Path(__file__).resolve().parent.parent
# The peer's architecture matching each of ours (its file's ARCHS; the narrow one is added to them here).
PEER_ARCHS = {"dcgan32": "dcgan32w", "dcgan64": "dcgan64", "dcgan64-narrow": "dcgan64-narrow"}
PEER_NARROW = "dict(size=64, channels=3, nf=16, mults=(8, 4, 2, 1))"


STREAM = []  # --stream: ["train.device_data_fraction=0"], each step's batch sent by the prefetching thread
EXTRA = []  # --set: more config values (a trial's hacks), after the architecture's


def overrides(arch: str, batch: int, loop: str, precision: str, xla: str = "auto") -> list[str]:
    return [*ARCHS[arch], f"train.batch_size={batch}", f"train.mixed_precision={precision}",
            f"train.loop={'compiled' if loop == 'compiled' else 'train_on_batch'}", f"train.jit_compile={xla}",
            *STREAM, *EXTRA]


def config(arch: str, batch: int, loop: str, precision: str, xla: str = "auto"):
    return load_config(None, overrides(arch, batch, loop, precision, xla))


class ReferenceLoop:
    """The seed's loop, made to train D in Keras 3 (d.trainable set before each call): fakes from G.predict, then
    three train_on_batch calls with hard labels."""

    def __init__(self, models, cfg, images, step_draws):
        self.models, self.cfg, self.images = models, cfg, images
        self.rng = np.random.default_rng(step_draws.seed)

    def step(self, step):
        m, h, rng = self.models, self.cfg.hacks, self.rng
        n = self.cfg.train.batch_size
        real = hacks.scale_images(sources.sample_batch(self.images, n, rng), hacks=h)
        z = hacks.sample_latent(rng, n, self.cfg.model.latent_dim, hacks=h)
        fake = m.g.predict(z, verbose=0)
        m.d.trainable = True
        ones, zeros = np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)
        m.d.train_on_batch(real, np.concatenate([ones, ones], axis=1))
        m.d.train_on_batch(fake, np.concatenate([zeros, zeros], axis=1))
        m.d.trainable = False
        m.gan.train_on_batch(z, ones)

    def take_sums(self):
        return {}


class KerasIoLoop:
    """keras.io's DCGAN ("DCGAN to generate face images", F. Chollet; its Keras 3 version) on the same G and D: a
    keras.Model whose train_step draws latents, trains D on one batch of fakes and reals (labels 1 and 0, plus
    0.05 * U(0, 1) noise), then G through D on new latents, each under a tf.GradientTape with BinaryCrossentropy
    on D's logits, run by fit() on a tf.data pipeline of the scaled images. The networks are called with
    training=True (the example has no BatchNormalization; ours does, and a port keeps it in training mode)."""

    def __init__(self, models, cfg, images):
        import tensorflow as tf

        self.tf, self.cfg = tf, cfg
        self.gan = _keras_io_gan(models.d, models.g, cfg.model.latent_dim)
        self.gan.compile(d_optimizer=hacks.optimizer(cfg.hacks, network="d"),
                         g_optimizer=hacks.optimizer(cfg.hacks, network="g"),
                         loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
        scaled = (images.astype(np.float32) - 127.5) / 127.5
        self.dataset = (tf.data.Dataset.from_tensor_slices(scaled).shuffle(1024).repeat()
                        .batch(cfg.train.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    def run(self, steps: int) -> None:
        self.gan.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0)

    def timed(self, warmup: int, steps: int) -> float:
        """Seconds of `steps` steps in one fit() of warmup + steps, from the end of the last warm-up batch to the
        end of the last: fit()'s own start (its iterator, the shuffle buffer) is a per-epoch cost, not a step's."""
        ends = [time.perf_counter()]  # without warm-up, from before fit()
        stamp = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
        self.gan.fit(self.dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[stamp])
        return ends[-1] - ends[warmup]


def _keras_io_gan(discriminator, generator, latent_dim: int):
    import tensorflow as tf
    from keras import ops

    class GAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.discriminator, self.generator, self.latent_dim = discriminator, generator, latent_dim
            self.seed_generator = keras.random.SeedGenerator(1337)

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn
            self.d_loss_metric = keras.metrics.Mean(name="d_loss")
            self.g_loss_metric = keras.metrics.Mean(name="g_loss")

        @property
        def metrics(self):
            return [self.d_loss_metric, self.g_loss_metric]

        def train_step(self, real_images):
            batch_size = ops.shape(real_images)[0]
            latents = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)
            generated = self.generator(latents, training=True)
            combined = ops.concatenate([generated, real_images], axis=0)
            labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
            labels += 0.05 * tf.random.uniform(tf.shape(labels))
            with tf.GradientTape() as tape:
                d_loss = self.loss_fn(labels, self.discriminator(combined, training=True))
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
            latents = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)
            misleading = ops.zeros((batch_size, 1))
            with tf.GradientTape() as tape:
                predictions = self.discriminator(self.generator(latents, training=True), training=True)
                g_loss = self.loss_fn(misleading, predictions)
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
            self.d_loss_metric.update_state(d_loss)
            self.g_loss_metric.update_state(g_loss)
            return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}

    return GAN()


def make_loop(loop: str, models, cfg, images, labels=None):
    runner = {"reference": ReferenceLoop, "keras.io": KerasIoLoop, "train_on_batch": SPLIT_LOOP,
              "compiled": COMPILED_LOOP}[loop]
    if loop == "keras.io":
        if keras.backend.backend() != "tensorflow":
            raise SystemExit("--loop keras.io: the example's train_step uses tf.GradientTape; KERAS_BACKEND=tensorflow")
        return runner(models, cfg, images)
    if loop == "reference":
        return runner(models, cfg, images, draws.Draws(cfg, count=len(images)))
    return runner(models, cfg, images, draws.Draws(cfg, count=len(images), classes=models.classes), labels)


def prepared(cfg):
    """Random uint8 images (and, for hack 21, random labels of 10 classes) and the models built for them."""
    rng = np.random.default_rng(0)
    count = max(cfg.train.batch_size * 8, 512)
    images = rng.integers(0, 256, (count, cfg.model.image_size, cfg.model.image_size, cfg.model.channels),
                          dtype=np.uint8)
    labels = classes = None
    if cfg.hacks.class_conditional:
        labels = (np.arange(count) % 10).astype(np.int32)
        classes = Classes(names=tuple(map(str, range(10))), counts=(count // 10,) * 10)
    resolve = getattr(backend, "resolve_precision", lambda setting: setting)  # --against a tree from before auto
    with backend.precision(resolve(cfg.train.mixed_precision)):
        models = build_models(cfg, rng, classes)
    return images, labels, models


def _advance(runner, loop: str, first: int, count: int) -> None:
    """Steps first .. first + count - 1 of a loop, waited for (fit() returns when its last step is done)."""
    if loop == "keras.io":
        runner.run(count)
        return
    for step in range(first, first + count):
        runner.step(step)
    runner.take_sums()  # waits for the device


def measure(arch: str, batch: int, loop: str, precision: str, steps: int, warmup: int, xla: str = "auto") -> dict:
    cfg = config(arch, batch, loop, precision, xla)
    images, labels, models = prepared(cfg)
    runner = make_loop(loop, models, cfg, images, labels)
    if loop == "keras.io":
        seconds = runner.timed(warmup, steps)
    else:
        _advance(runner, loop, 1, warmup)
        started = time.perf_counter()
        _advance(runner, loop, warmup + 1, steps)
        seconds = time.perf_counter() - started
    if loop not in ("reference", "keras.io"):
        runner.close()
    return {"arch": arch, "batch": batch, "loop": loop, "backend": keras.backend.backend(), "precision": precision,
            "images_per_s": round(steps * batch / seconds, 1), "steps": steps, "warmup": warmup,
            "xla": backend.use_xla(xla) if keras.backend.backend() == "tensorflow" else keras.backend.backend() == "jax",
            "g_params": models.g.count_params(), "d_params": models.d.count_params(),
            "devices": backend.local_devices()}


def _per_step_ms(fn, steps: int, sync) -> float:
    """Milliseconds per call of fn() over `steps` calls, the device drained before and after."""
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - started) * 1000 / steps


def breakdown(arch: str, batch: int, loop: str, precision: str, steps: int, warmup: int, xla: str = "auto") -> dict:
    """Where one training step's time goes, in milliseconds per step (see the module docstring)."""
    if loop in ("reference", "keras.io"):
        raise SystemExit("--breakdown measures the product's loops: --loop compiled or train_on_batch")
    cfg = config(arch, batch, loop, precision, xla)
    images, labels, models = prepared(cfg)
    runner = make_loop(loop, models, cfg, images, labels)
    run_steps, other_steps = iter(range(1, 10**6)), iter(range(10**6, 10**7))  # the loop's; any other step's
    for _ in range(warmup):
        runner.step(next(run_steps))
    sync, feed = runner.take_sums, runner.feed
    figures = {}
    if not feed.resident:  # the prefetching thread's work for one step, which overlaps the step before
        figures["prefetch_ms"] = _per_step_ms(lambda: feed._batch(next(other_steps)), steps, lambda: None)
    step_tensor = backend.int32_argument(warmup)
    source = feed.placed if feed.resident else feed._batch(next(other_steps))
    figures["host_ms"] = _per_step_ms(lambda: (distribute_batch(source),
                                               backend.int32_argument(next(other_steps))), steps,
                                      lambda: None)
    if loop == "compiled":
        step = runner.compiled
        if step.stateless:
            def alone() -> None:
                step.state = step._step(step.state, source, step_tensor)
        else:
            def alone() -> None:
                step._step(source, step_tensor)
        figures["step_alone_ms"] = _per_step_ms(alone, steps, sync)
    else:
        def inputs():
            return runner.prepare(source, next(other_steps))

        figures["inputs_ms"] = _per_step_ms(lambda: keras.ops.convert_to_numpy(inputs()[1]), steps, lambda: None)
        batches, g_inputs, g_targets = inputs()
        figures["d_updates_ms"] = _per_step_ms(lambda: loops.update_d(models, batches, cfg=cfg), steps, sync)
        figures["g_update_ms"] = _per_step_ms(lambda: loops.update_g(models, g_inputs, g_targets), steps, sync)
        figures["step_alone_ms"] = figures["inputs_ms"] + figures["d_updates_ms"] + figures["g_update_ms"]
    figures["full_step_ms"] = _per_step_ms(lambda: runner.step(next(run_steps)), steps, sync)
    runner.close()
    rounded = {key: round(value, 3) for key, value in figures.items()}
    return {"arch": arch, "batch": batch, "loop": loop, "backend": keras.backend.backend(), "precision": precision,
            "dataset_on_device": feed.resident,
            **rounded, "host_share_of_step": round(figures["host_ms"] / figures["step_alone_ms"], 3),
            "full_over_step_alone": round(figures["full_step_ms"] / figures["step_alone_ms"], 3),
            "images_per_s_full": round(batch * 1000 / figures["full_step_ms"], 1),
            "images_per_s_step_alone": round(batch * 1000 / figures["step_alone_ms"], 1),
            "steps": steps, "warmup": warmup, "devices": backend.local_devices()}


# --profile: a TensorFlow op's part of the step, by its type and its name scope, first rule that matches.
PARTS = (("idle", lambda kind, name: kind == "IDLE"),
         ("convolutions", lambda kind, name: "Conv" in kind),
         ("dense layers", lambda kind, name: "MatMul" in kind),
         ("batch norm", lambda kind, name: "_bn" in name or "batchnorm" in name or "moments" in name
          or "BatchNorm" in kind),
         ("optimizer", lambda kind, name: name.split("/")[0].startswith(("adam", "sgd", "optimizer"))
          or kind.startswith(("Assign", "ResourceApply"))),
         ("random draws and batch", lambda kind, name: "Random" in kind or kind in ("GatherV2", "Cast")
          or "random" in name),
         ("activations", lambda kind, name: "Relu" in kind or "Tanh" in kind or "Sigmoid" in kind),
         ("other", lambda kind, name: True))


def profile(arch: str, batch: int, loop: str, precision: str, steps: int, warmup: int, xla: str = "auto") -> dict:
    """Where a step's time goes on TensorFlow: `steps` steps under TensorFlow's profiler, each op's own time summed
    per part of the step (PARTS: convolutions, batch norm, the optimizer, the random draws, ...) in ms of thread
    time per step, and the compute threads' idle time beside them. Thread time: two threads busy for 1 ms count
    2 ms, so the parts add up to the wall time of a step times the compute threads."""
    import glob

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_tools

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("--profile reads TensorFlow's profiler: KERAS_BACKEND=tensorflow")
    cfg = config(arch, batch, loop, precision, xla)
    images, labels, models = prepared(cfg)
    runner = make_loop(loop, models, cfg, images, labels)
    _advance(runner, loop, 1, warmup)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        _advance(runner, loop, warmup + 1, steps)
        wall_ms = (time.perf_counter() - started) * 1000 / steps
        tf.profiler.experimental.stop()
        found = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
        data, _ = profiler_tools.xspace_to_tools_data(found, "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    rows = [dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]])) for row in table["rows"]]
    parts = {name: 0.0 for name, _ in PARTS}
    ops = {}
    for row in rows:
        part = next(name for name, rule in PARTS if rule(row["type"], row["operation"]))
        parts[part] += row["total_self_time"] / 1000 / steps
        ops[row["type"]] = ops.get(row["type"], 0.0) + row["total_self_time"] / 1000 / steps
    total = sum(parts.values())
    if loop not in ("reference", "keras.io"):
        runner.close()
    return {"arch": arch, "batch": batch, "loop": loop, "backend": "tensorflow", "precision": precision,
            "wall_ms_per_step": round(wall_ms, 2), "thread_ms_per_step": round(total, 2),
            "parts_ms": {name: round(value, 2) for name, value in parts.items()},
            "parts_share": {name: round(value / total, 3) for name, value in parts.items()},
            "top_ops_ms": {name: round(value, 2) for name, value in sorted(ops.items(), key=lambda kv: -kv[1])[:12]},
            "steps": steps, "overrides": EXTRA}


def through_cli(arch: str, batch: int, loop: str, precision: str, steps: int, xla: str = "auto") -> dict:
    """`dcgan train` on random images as a user runs it; images/s from its metrics.jsonl, after the first window."""
    if loop in ("reference", "keras.io"):
        raise SystemExit("--cli times `dcgan train`: --loop compiled or train_on_batch")
    log_every = max(steps // 5, 1)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
        cfg = config(arch, batch, loop, precision, xla)
        shape = (cfg.model.image_size, cfg.model.image_size, cfg.model.channels)
        images = np.random.default_rng(0).integers(0, 256, (max(batch * 8, 512), *shape), dtype=np.uint8)
        np.save(Path(scratch) / "images.npy", images)
        sets = [*overrides(arch, batch, loop, precision, xla), "data.name=npy", f"data.path={scratch}/images.npy",
                f"train.steps={steps}", f"output.log_every={log_every}", f"output.sample_every={steps}",
                f"output.checkpoint_every={steps}", "output.progress=false"]
        command = [sys.executable, "-m", "dcgan_cli", "train", "--config", str(Path(scratch) / "bench.yaml"),
                   "--run-dir", str(Path(scratch) / "run")]
        (Path(scratch) / "bench.yaml").write_text("{}\n")
        for item in sets:
            command += ["--set", item]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        lines = [json.loads(line) for line in (Path(scratch) / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [line["images_per_s"] for line in lines if "images_per_s" in line][1:]
    return {"arch": arch, "batch": batch, "loop": loop, "backend": keras.backend.backend(), "precision": precision,
            "mode": "dcgan train", "images_per_s": round(statistics.median(rates), 1) if rates else None,
            "windows": len(rates), "steps": steps, "wall_s": round(wall, 1)}


def _own(args: argparse.Namespace, loop: str) -> list[str]:
    """This file measuring `loop` once, as args say, in a process of its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--arch", args.arch, "--batch", str(args.batch),
               "--loop", loop, "--precision", args.precision, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--xla", args.xla]
    return command + [arg for item in args.sets for arg in ("--set", item)]


def _peer(args: argparse.Namespace) -> list[str]:
    """The pytorch/examples loop in args.peer at the matching architecture, on this machine's cores."""
    if args.arch not in PEER_ARCHS:
        raise SystemExit(f"--peer: no matching peer architecture for --arch {args.arch}")
    peer = Path(args.peer).resolve()
    run_peer = (f"import sys; sys.path.insert(0, {str(peer.parent)!r}); import {peer.stem} as peer; "
                f"peer.ARCHS['dcgan64-narrow'] = {PEER_NARROW}; sys.argv[0] = {str(peer)!r}; peer.main()")
    return [sys.executable, "-c", run_peer, "--arch", PEER_ARCHS[args.arch], "--batch", str(args.batch), "--steps",
            str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]


def compare(args: argparse.Namespace) -> None:
    """The product's two loops against the peers (the seed loop, keras.io's train_step and, with --peer, the
    pytorch/examples loop), each measurement in a fresh process, rounds interleaved; ratios to the best peer."""
    sides = {loop: (_own(args, loop), ROOT, {}) for loop in LOOPS}
    if args.peer:
        sides[TORCH_PEER] = (_peer(args), ROOT, {})
    found = _run_sides(sides, args)
    peers = [name for name in found if name in PEERS]
    best = max(peers, key=lambda name: statistics.median(found[name]))
    _table(found, args, f"vs {best}", statistics.median(found[best]))


def side_by_side(args: argparse.Namespace) -> None:
    """This tree's loop against the peer's or another revision's, each measurement in a fresh process, rounds
    interleaved so that a busy machine slows all alike: one JSON line each, then the medians and ratios."""
    own = _own(args, args.loop)
    sides = ({"oneDNN on": (own, ROOT, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
              "oneDNN off": (own, ROOT, {"TF_ENABLE_ONEDNN_OPTS": "0"})} if args.onednn
             else {"this tree": (own, ROOT, {})})
    with tempfile.TemporaryDirectory(prefix="bench-against-") as scratch:
        if args.against:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from before_after import export

            sides[args.against] = (own, export(args.against, Path(scratch)), {})
        if args.peer:
            sides[TORCH_PEER] = (_peer(args), ROOT, {})
        found = _run_sides(sides, args)
    _table(found, args, "vs the first", statistics.median(next(iter(found.values()))))


def _run_sides(sides: dict, args: argparse.Namespace) -> dict[str, list[float]]:
    """Each side measured once per round, in a fresh process, the rounds interleaved; images/s by side."""
    found = {name: [] for name in sides}
    for round_number in range(args.rounds):
        for name, (command, code, extra) in sides.items():
            env = {**os.environ, "PYTHONPATH": str(code), **thread_env(args.threads), **extra}
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=code).stdout
            result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
            found[name].append(result["images_per_s"])
            print(json.dumps({"side": name, "round": round_number + 1, **result}), flush=True)
    return found


def _table(found: dict[str, list[float]], args: argparse.Namespace, heading: str, baseline: float) -> None:
    """The medians, their ratios to `baseline` and every round's figure, under a line naming the machine."""
    cpu = machine.this_cpu()
    print(f"\n{args.arch}, batch {args.batch}, {keras.backend.backend()}, precision {args.precision}, "
          f"{' '.join(args.sets) + ', ' if args.sets else ''}median of {args.rounds} interleaved rounds, "
          f"{args.steps} steps each, {args.threads} thread{'s' if args.threads > 1 else ''}; {cpu.describe()}, "
          f"{CORES} cores, "
          f"oneDNN {'on' if machine.onednn_on() else 'off'}")
    print(f"{'':<28}{'images/s':>10}{heading:>28}   rounds")
    for name, values in found.items():
        median = statistics.median(values)
        print(f"{name:<28}{median:>10.1f}{median / baseline:>27.3f}x   {', '.join(f'{v:.1f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="dcgan32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--loop", choices=LOOPS, default="compiled")
    parser.add_argument("--precision", choices=("off", "auto", "bfloat16", "float16"), default="off")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: 60 for dcgan32, 12 for dcgan64, 300 for tiny)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                        help="TensorFlow, compiled loop: train.jit_compile (auto: XLA with a GPU only)")
    parser.add_argument("--compare", action="store_true",
                        help="the product's loops against the seed loop, keras.io's train_step and (--peer) "
                             "the pytorch/examples loop, interleaved rounds")
    parser.add_argument("--threads", type=int, default=CORES,
                        help="--compare, --peer, --against, --onednn: each side's compute threads (default: the "
                             "cores; 1 is how each worker of a study runs)")
    parser.add_argument("--rounds", type=int, default=3, help="--compare, --peer, --against: interleaved rounds")
    parser.add_argument("--peer", metavar="PATH", help="also the pytorch/examples loop in this file (torch_loop.py)")
    parser.add_argument("--against", metavar="REV", help="also this loop with the code of git revision REV")
    parser.add_argument("--onednn", action="store_true", help="TensorFlow's oneDNN kernels on, then off")
    parser.add_argument("--breakdown", action="store_true", help="host, step alone and full step, in ms per step")
    parser.add_argument("--profile", action="store_true",
                        help="TensorFlow: the step's thread time by part (convolutions, batch norm, optimizer, ...)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="another config value on top of the architecture's (a trial's hacks); repeatable")
    parser.add_argument("--cli", action="store_true", help="time `dcgan train` itself, from its metrics.jsonl")
    parser.add_argument("--stream", action="store_true",
                        help="compiled loop: keep the dataset off the device (train.device_data_fraction 0)")
    args = parser.parse_args()
    if args.stream:
        STREAM.append("train.device_data_fraction=0")
    EXTRA.extend(args.sets)
    args.steps = args.steps or {"dcgan32": 60, "dcgan64": 12, "dcgan64-narrow": 60, "tiny": 300}[args.arch]
    steps = args.steps
    if args.onednn and (args.peer or args.against):
        parser.error("--onednn compares this tree with itself: not with --peer or --against")
    if args.compare and (args.onednn or args.against):
        parser.error("--compare measures this tree's loops against the peers: not with --onednn or --against")
    if args.compare:
        compare(args)
    elif args.peer or args.against or args.onednn:
        side_by_side(args)
    elif args.profile:
        print(json.dumps(profile(args.arch, args.batch, args.loop, args.precision, steps, args.warmup, args.xla)))
    elif args.breakdown:
        print(json.dumps(breakdown(args.arch, args.batch, args.loop, args.precision, steps, args.warmup, args.xla)))
    elif args.cli:
        print(json.dumps(through_cli(args.arch, args.batch, args.loop, args.precision, max(steps, 50), args.xla)))
    else:
        print(json.dumps(measure(args.arch, args.batch, args.loop, args.precision, steps, args.warmup, args.xla)))


if __name__ == "__main__":
    sys.exit(main())
