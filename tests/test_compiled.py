"""The compiled loop does the train_on_batch loop's mathematics; backends, mixed precision, data parallelism."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from dcgan_cli import backend
from dcgan_cli.training import plots, train
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.training.compiled import CompiledStep
from dcgan_cli.state.draws import Draws
from dcgan_cli.config import load_config
from dcgan_cli.nets.models import build_models

from conftest import crashed_copy

ROOT = Path(__file__).resolve().parents[1]


def arrays(run: Path, step: int) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"step_{step:06d}" / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


def assert_close(a: dict, b: dict, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("extra", [
    [],
    ["hacks.separate_batches=false", "model.d_bn_in_g_update=moving"],
    ["hacks.label_smoothing=false", "hacks.noisy_labels=false", "hacks.adam=false"],
])
def test_both_loops_agree_from_the_same_weights_batches_latents_and_labels(tmp_path, tiny_overrides, extra):
    """Same seed, so the same initial weights and the same draws of batches, latents, label noise and shuffles."""
    runs = {}
    for loop in ("train_on_batch", "compiled"):
        cfg = load_config(None, [*tiny_overrides, *extra, "train.steps=5", f"train.loop={loop}",
                                 "output.checkpoint_every=5", "output.log_every=5"])
        runs[loop] = train.run(cfg, run_dir=tmp_path / loop)
    assert_close(arrays(runs["train_on_batch"], 5), arrays(runs["compiled"], 5))
    split, compiled = ((run / "metrics.jsonl").read_text().splitlines()[-1] for run in runs.values())
    for key in METRICS:
        a = float(split.split(f'"{key}": ')[1].split(",")[0])
        b = float(compiled.split(f'"{key}": ')[1].split(",")[0])
        assert a == pytest.approx(b, rel=1e-4), key


@pytest.mark.parametrize("fraction", [0.25, 0.0])  # the dataset on the device; streamed, prefetched batches
def test_the_compiled_loop_resumes_exactly(tmp_path, tiny_overrides, fraction):
    base = [*tiny_overrides, "train.loop=compiled", "output.checkpoint_every=1",
            f"train.device_data_fraction={fraction}"]
    whole = train.run(load_config(None, [*base, "train.steps=6"]), run_dir=tmp_path / "whole")
    part = crashed_copy(whole, after=4, to=tmp_path / "part")
    train.run(load_config(None, [*base, "train.steps=6"]), run_dir=part, resume=True)
    a, b = arrays(whole, 6), arrays(part, 6)
    assert all(np.array_equal(a[key], b[key]) for key in a)


def test_a_dataset_too_big_for_the_device_streams_the_same_batches(tmp_path, tiny_overrides, monkeypatch):
    """The streamed path (each step sends its uint8 batch) trains bit for bit like the resident one."""
    placed = []
    original = backend.place_dataset
    monkeypatch.setattr(backend, "place_dataset", lambda images, fraction: placed.append(
        original(images, fraction=fraction)) or placed[-1])
    runs = {}
    for fraction in (0.25, 0.0):
        cfg = load_config(None, [*tiny_overrides, "train.loop=compiled", "train.steps=6",
                                 f"train.device_data_fraction={fraction}"])
        runs[fraction] = train.run(cfg, run_dir=tmp_path / str(fraction))
    assert placed[0] is not None and placed[1] is None
    a, b = arrays(runs[0.25], 6), arrays(runs[0.0], 6)
    assert all(np.array_equal(a[key], b[key]) for key in a)


def test_the_dataset_is_placed_only_within_its_share_of_device_memory(monkeypatch):
    images = np.zeros((10, 16, 16, 1), dtype=np.uint8)  # 2,560 bytes
    monkeypatch.setattr(backend, "device_memory", lambda: 10_000)
    resident = backend.place_dataset(images, fraction=0.5)
    assert resident is not None and keras.ops.convert_to_numpy(resident).dtype == np.uint8
    assert backend.place_dataset(images, fraction=0.2) is None  # 2,560 > 2,000 bytes
    assert backend.place_dataset(images, fraction=0.0) is None
    monkeypatch.setattr(backend, "device_memory", lambda: 1 << 40)
    assert backend.device_memory() == 1 << 40 and backend.place_dataset(images, fraction=0.25) is not None


def test_the_compiled_loop_reads_metrics_back_only_when_logging_or_saving(tmp_path, tiny_overrides, monkeypatch):
    reads = []
    original = CompiledStep.take_metric_sums
    monkeypatch.setattr(CompiledStep, "take_metric_sums", lambda self: reads.append(1) or original(self))
    cfg = load_config(None, [*tiny_overrides, "train.loop=compiled", "train.steps=12", "output.log_every=4",
                             "output.checkpoint_every=6", "output.sample_every=12"])
    train.run(cfg, run_dir=tmp_path / "run")
    assert len(reads) == 4  # steps 4, 6, 8, 12 — not 12 reads


def test_d_and_g_updates_touch_only_their_own_network_in_the_compiled_step(tiny_cfg):
    models = build_models(tiny_cfg, np.random.default_rng(0))
    step = CompiledStep(models, tiny_cfg, Draws(tiny_cfg, count=8), resident=False)
    step.write_back()
    before = {v.path: np.array(v.numpy()) for v in [*models.g.weights, *models.d.weights]}
    step(np.random.default_rng(1).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8), 1)
    step.write_back()
    after = {v.path: np.array(v.numpy()) for v in [*models.g.weights, *models.d.weights]}
    assert all(not np.array_equal(before[key], after[key]) for key in before), "every weight and statistic moves"
    assert all(np.isfinite(value).all() for value in after.values())


def test_the_jax_step_reuses_the_state_buffers_it_replaces(tiny_cfg):
    if keras.backend.backend() != "jax":
        pytest.skip("donation is JAX's")
    images = np.random.default_rng(1).integers(0, 256, (20, 16, 16, 1), dtype=np.uint8)
    step = CompiledStep(build_models(tiny_cfg, np.random.default_rng(0)), tiny_cfg, Draws(tiny_cfg, count=20),
                        resident=True)
    old = step.state
    step(images, 1)
    assert all(array.is_deleted() for group in old[:6] for array in group) and old[-1].is_deleted()
    step.write_back()
    assert all(np.isfinite(v.numpy()).all() for v in step.models.g.weights)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_mixed_precision_keeps_variables_losses_and_d_output_in_float32(tmp_path, tiny_overrides, precision, loop):
    cfg = load_config(None, [*tiny_overrides, f"train.mixed_precision={precision}", f"train.loop={loop}"])
    with backend.precision(precision):
        models = build_models(cfg, np.random.default_rng(0))
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored"
    conv = models.d.get_layer("down2")
    assert conv.compute_dtype == precision and conv.kernel.dtype == "float32"
    assert models.d.get_layer("d_score").compute_dtype == "float32"
    assert models.d.output.dtype == "float32" and models.g.output.dtype == "float32"
    optimizer_kind = type(models.d.optimizer).__name__
    assert optimizer_kind == ("LossScaleOptimizer" if precision == "float16" else "Adam")
    run = train.run(cfg, run_dir=tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all("NaN" not in line and "Infinity" not in line for line in lines)


def test_data_parallel_needs_a_batch_that_splits_evenly(tiny_overrides, monkeypatch):
    monkeypatch.setattr(backend, "local_devices", lambda: ["a", "b", "c"])
    with pytest.raises(Exception, match="train.batch_size: expected a multiple of the 3 devices"):
        with backend.data_parallel(True, batch_size=8):
            pass


def run_elsewhere(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def tiny_cli(run: Path, *extra: str) -> list[str]:
    sets = ["model.image_size=16", "model.latent_dim=8", "model.g_filters=8", "model.d_filters=8",
            "train.batch_size=8", "train.steps=4", "output.sample_every=4", "output.checkpoint_every=4",
            "output.log_every=2", "output.n_samples=9", "output.progress=false", *extra]
    config = run.parent / "empty.yaml"
    config.write_text("{}\n")
    return ["-m", "dcgan_cli", "train", "--config", str(config), "--run-dir", str(run),
            *[arg for s in sets for arg in ("--set", s)]]


needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")


# `dcgan train` once per command line, in one process (a process start costs more than a tiny run).
COMMANDS = """
import json, sys
from dcgan_cli.cli import main
for args in json.loads(sys.argv[1]):
    main(args, standalone_mode=False)
"""


@needs_jax
@pytest.mark.e2e
def test_jax_data_parallel_over_two_virtual_devices_matches_one_device(tmp_path):
    """Both loops over two virtual devices, then the compiled loop with distribution off in the same process."""
    commands = [tiny_cli(tmp_path / f"dp-{loop}", f"train.loop={loop}", "train.distribution=data_parallel",
                         "monitor.check_every=2")[2:] for loop in ("compiled", "train_on_batch")]
    commands.append(tiny_cli(tmp_path / "single", "train.loop=compiled")[2:])  # without "-m dcgan_cli"
    result = run_elsewhere("-c", COMMANDS, json.dumps(commands),
                           env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("data parallel over 2 devices") == 2
    for loop in ("compiled", "train_on_batch"):
        probes = [r for r in plots.read_metrics(tmp_path / f"dp-{loop}") if "probe" in r]
        assert [r["step"] for r in probes] == [2, 4], loop  # the monitor's probes run on the split batch too
        assert all(np.isfinite(list(r["probe"].values())).all() and r["probe"]["diversity"] > 0 for r in probes)
    assert_close(arrays(tmp_path / "dp-compiled", 4), arrays(tmp_path / "single", 4), rtol=1e-3, atol=1e-5)


@pytest.mark.e2e
def test_tensorflow_data_parallel_over_two_logical_cpus(tmp_path):
    result = run_elsewhere(*tiny_cli(tmp_path / "dp", "train.distribution=data_parallel", "monitor.check_every=2"),
                           env={"KERAS_BACKEND": "tensorflow", "DCGAN_CPU_DEVICES": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["step"] for r in plots.read_metrics(tmp_path / "dp") if "probe" in r] == [2, 4]
    assert "data parallel over 2 devices: /device:CPU:0, /device:CPU:1" in result.stderr
    assert all(np.isfinite(value).all() for value in arrays(tmp_path / "dp", 4).values())
