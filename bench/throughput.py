"""Training throughput of the DCGAN-32 and DCGAN-64 architectures on random in-memory data, through the product's
own loops (train_on_batch, compiled) and a reference seed-style Keras loop written here (G.predict, then
D.train_on_batch on real, D.train_on_batch on fake, GAN.train_on_batch). Warm-up steps are not timed.

    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled [--precision bfloat16] [--steps N]
    python bench/throughput.py --arch dcgan64 --batch 64 --compare      # all three loops, 3 interleaved rounds
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --breakdown    # where a step's time goes
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --cli          # `dcgan train` itself
    python bench/throughput.py --arch dcgan64 --batch 64 --loop compiled --peer ../shared/peers/torch_loop.py
    python bench/throughput.py --arch dcgan64 --batch 64 --loop compiled --against a0a2c22   # this tree vs a commit
    python bench/throughput.py --arch dcgan32 --batch 64 --loop compiled --onednn    # TensorFlow's oneDNN on vs off

One measurement prints one JSON line; --compare prints a table of medians and ratios to the reference loop.
--breakdown times, per step: host_ms, what the host does before the step's compiled work (the step number and the
source handed over; the draws, the gather and the scaling happen on the device), the step alone on inputs already
on the device (compiled loop) or its parts (train_on_batch: inputs_ms, the compiled call that makes the step's
inputs and G's fakes on the device, then the D updates and the G update, each waited for), the full step as
`dcgan train` runs it, and where the dataset is streamed, prefetch_ms, the thread's work per batch (indices drawn,
images gathered and sent) that overlaps the step before. --cli runs `dcgan train` as a user does and reads images/s
from its metrics.jsonl (the first log window, which includes compilation, left out). --arch tiny (8x8 images,
4 filters) is a step so small that the loop's own overhead is most of it: a CPU's stand-in for what a fast GPU
leaves of a step; --arch dcgan64-narrow is DCGAN-64 at a quarter of its widths (ngf = ndf = 16), the same depth.
--peer PATH measures the pytorch/examples loop (the file ../shared/peers/torch_loop.py) at the same architecture and
batch beside the product's loop, --against REV the product's loop with the code of git revision REV beside this
tree's, --onednn this tree with TensorFlow's oneDNN kernels on and off (TF_ENABLE_ONEDNN_OPTS): each
measurement in a fresh process, --rounds interleaved rounds, medians and the ratio to the first.
The backend is Keras' (KERAS_BACKEND=tensorflow|jax|torch).
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
from dcgan_cli.backend import distribute_batch  # noqa: E402
from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.data import sources  # noqa: E402
from dcgan_cli.nets import hacks  # noqa: E402
from dcgan_cli.nets.models import build_models  # noqa: E402
from dcgan_cli.state import draws  # noqa: E402
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
LOOPS = ("reference", "train_on_batch", "compiled")
ROOT = Path(__file__).resolve().parent.parent
# The peer's architecture matching each of ours (its file's ARCHS; the narrow one is added to them here).
PEER_ARCHS = {"dcgan32": "dcgan32w", "dcgan64": "dcgan64", "dcgan64-narrow": "dcgan64-narrow"}
PEER_NARROW = "dict(size=64, channels=3, nf=16, mults=(8, 4, 2, 1))"


STREAM = []  # --stream: ["train.device_data_fraction=0"], each step's batch sent by the prefetching thread


def overrides(arch: str, batch: int, loop: str, precision: str, xla: str = "auto") -> list[str]:
    return [*ARCHS[arch], f"train.batch_size={batch}", f"train.mixed_precision={precision}",
            f"train.loop={'compiled' if loop == 'compiled' else 'train_on_batch'}", f"train.jit_compile={xla}",
            *STREAM]


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


def make_loop(loop: str, models, cfg, images):
    runner = {"reference": ReferenceLoop, "train_on_batch": SPLIT_LOOP, "compiled": COMPILED_LOOP}[loop]
    if loop == "reference":
        return runner(models, cfg, images, draws.Draws(cfg, count=len(images)))
    return runner(models, cfg, images, draws.Draws(cfg, count=len(images)), None)  # no class labels (hack 21)


def measure(arch: str, batch: int, loop: str, precision: str, steps: int, warmup: int, xla: str = "auto") -> dict:
    cfg = config(arch, batch, loop, precision, xla)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(batch * 8, 512), cfg.model.image_size, cfg.model.image_size,
                                   cfg.model.channels), dtype=np.uint8)
    with backend.precision(precision):
        models = build_models(cfg, rng)
    runner = make_loop(loop, models, cfg, images)
    for step in range(1, warmup + 1):
        runner.step(step)
    runner.take_sums()  # waits for the device
    started = time.perf_counter()
    for step in range(warmup + 1, warmup + steps + 1):
        runner.step(step)
    runner.take_sums()
    seconds = time.perf_counter() - started
    if loop != "reference":
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
    if loop == "reference":
        raise SystemExit("--breakdown measures the product's loops: --loop compiled or train_on_batch")
    cfg = config(arch, batch, loop, precision, xla)
    rng = np.random.default_rng(0)
    shape = (cfg.model.image_size, cfg.model.image_size, cfg.model.channels)
    images = rng.integers(0, 256, (max(batch * 8, 512), *shape), dtype=np.uint8)
    with backend.precision(precision):
        models = build_models(cfg, rng)
    runner = make_loop(loop, models, cfg, images)
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


def through_cli(arch: str, batch: int, loop: str, precision: str, steps: int, xla: str = "auto") -> dict:
    """`dcgan train` on random images as a user runs it; images/s from its metrics.jsonl, after the first window."""
    if loop == "reference":
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


def compare(arch: str, batch: int, precision: str, steps: int, warmup: int, xla: str, rounds: int = 3) -> None:
    results = {loop: [] for loop in LOOPS}
    for round_number in range(rounds):
        for loop in LOOPS:
            result = measure(arch, batch, loop, precision, steps, warmup, xla)
            results[loop].append(result["images_per_s"])
            print(json.dumps({**result, "round": round_number + 1}), flush=True)
    reference = statistics.median(results["reference"])
    print(f"\n{arch}, batch {batch}, {keras.backend.backend()}, {precision}, jit_compile {xla}: "
          f"median of {rounds} rounds")
    print(f"{'loop':<16}{'images/s':>10}{'vs reference':>14}")
    for loop in LOOPS:
        median = statistics.median(results[loop])
        print(f"{loop:<16}{median:>10.0f}{median / reference:>13.2f}x")


def side_by_side(args: argparse.Namespace) -> None:
    """This tree's loop against the peer's or another revision's, each measurement in a fresh process, rounds
    interleaved so that a busy machine slows all alike: one JSON line each, then the medians and ratios."""
    own = [sys.executable, str(Path(__file__).resolve()), "--arch", args.arch, "--batch", str(args.batch), "--loop",
           args.loop, "--precision", args.precision, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--xla", args.xla]
    sides = ({"oneDNN on": (own, ROOT, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
              "oneDNN off": (own, ROOT, {"TF_ENABLE_ONEDNN_OPTS": "0"})} if args.onednn
             else {"this tree": (own, ROOT, {})})
    scratch = tempfile.TemporaryDirectory(prefix="bench-against-")
    if args.against:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from before_after import export

        sides[args.against] = (own, export(args.against, Path(scratch.name)), {})
    if args.peer:
        if args.arch not in PEER_ARCHS:
            raise SystemExit(f"--peer: no matching peer architecture for --arch {args.arch}")
        peer = Path(args.peer).resolve()
        run_peer = (f"import sys; sys.path.insert(0, {str(peer.parent)!r}); import {peer.stem} as peer; "
                    f"peer.ARCHS['dcgan64-narrow'] = {PEER_NARROW}; sys.argv[0] = {str(peer)!r}; peer.main()")
        sides["pytorch/examples (peer)"] = ([sys.executable, "-c", run_peer, "--arch", PEER_ARCHS[args.arch],
                                             "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
                                             str(args.warmup), "--threads", str(os.cpu_count())], ROOT, {})
    found = {name: [] for name in sides}
    with scratch:
        for round_number in range(args.rounds):
            for name, (command, code, extra) in sides.items():
                env = {**os.environ, "PYTHONPATH": str(code), **extra}
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=code).stdout
                result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
                found[name].append(result["images_per_s"])
                print(json.dumps({"side": name, "round": round_number + 1, **result}), flush=True)
    first = statistics.median(next(iter(found.values())))
    print(f"\n{args.arch}, batch {args.batch}, {args.loop} loop, {keras.backend.backend()}, {args.precision}: "
          f"median of {args.rounds} interleaved rounds, {args.steps} steps each")
    print(f"{'':<28}{'images/s':>10}{'vs the first':>14}   rounds")
    for name, values in found.items():
        median = statistics.median(values)
        print(f"{name:<28}{median:>10.1f}{median / first:>13.3f}x   {', '.join(f'{v:.1f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="dcgan32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--loop", choices=LOOPS, default="compiled")
    parser.add_argument("--precision", choices=("off", "bfloat16", "float16"), default="off")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: 60 for dcgan32, 12 for dcgan64, 300 for tiny)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                        help="TensorFlow, compiled loop: train.jit_compile (auto: XLA with a GPU only)")
    parser.add_argument("--compare", action="store_true", help="all three loops, interleaved rounds")
    parser.add_argument("--rounds", type=int, default=3, help="--compare, --peer, --against: interleaved rounds")
    parser.add_argument("--peer", metavar="PATH", help="also the pytorch/examples loop in this file (torch_loop.py)")
    parser.add_argument("--against", metavar="REV", help="also this loop with the code of git revision REV")
    parser.add_argument("--onednn", action="store_true", help="TensorFlow's oneDNN kernels on, then off")
    parser.add_argument("--breakdown", action="store_true", help="host, step alone and full step, in ms per step")
    parser.add_argument("--cli", action="store_true", help="time `dcgan train` itself, from its metrics.jsonl")
    parser.add_argument("--stream", action="store_true",
                        help="compiled loop: keep the dataset off the device (train.device_data_fraction 0)")
    args = parser.parse_args()
    if args.stream:
        STREAM.append("train.device_data_fraction=0")
    args.steps = args.steps or {"dcgan32": 60, "dcgan64": 12, "dcgan64-narrow": 60, "tiny": 300}[args.arch]
    steps = args.steps
    if args.onednn and (args.peer or args.against):
        parser.error("--onednn compares this tree with itself: not with --peer or --against")
    if args.peer or args.against or args.onednn:
        side_by_side(args)
    elif args.breakdown:
        print(json.dumps(breakdown(args.arch, args.batch, args.loop, args.precision, steps, args.warmup, args.xla)))
    elif args.cli:
        print(json.dumps(through_cli(args.arch, args.batch, args.loop, args.precision, max(steps, 50), args.xla)))
    elif args.compare:
        compare(args.arch, args.batch, args.precision, steps, args.warmup, args.xla, args.rounds)
    else:
        print(json.dumps(measure(args.arch, args.batch, args.loop, args.precision, steps, args.warmup, args.xla)))


if __name__ == "__main__":
    sys.exit(main())
