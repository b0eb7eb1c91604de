"""train.ema_decay: a moving average of G's variables, updated every step in both loops, checkpointed, resumed
exactly, and what sample, evaluate and the grids use unless --raw."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dcgan_cli.state import checkpoint
from dcgan_cli.training import train
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.nets.models import build_models

from conftest import crashed_copy


def group(run, step: int, name: str) -> list[np.ndarray]:
    with np.load(run / "checkpoints" / f"step_{step:06d}" / "weights.npz") as saved:
        return [saved[key] for key in sorted(k for k in saved.files if k.startswith(f"{name}/"))]


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_the_average_equals_one_computed_by_hand_from_each_steps_weights(tmp_path, tiny_overrides, loop):
    """decay_t = min(decay, (1 + t) / (10 + t)) over G's weights; the BatchNorm statistics are G's batch
    statistics under the averaged weights (ema.calibrate_ema), not an average."""
    sets = [*tiny_overrides, f"train.loop={loop}", "train.ema_decay=0.6", "train.steps=3",
            "output.checkpoint_every=1"]
    cfg = load_config(None, sets)
    run = train.run(cfg, run_dir=tmp_path / "run")
    g = build_models(cfg, np.random.default_rng(cfg.train.seed)).g
    weights = [i for i, v in enumerate(g.weights) if v.trainable]
    average = [g.get_weights()[i] for i in weights]
    for step in (1, 2, 3):
        decay = np.minimum(np.float32(0.6), np.float32(1 + step) / np.float32(10 + step))
        trained = group(run, step, "g")
        average = [a * decay + trained[i] * (np.float32(1) - decay) for a, i in zip(average, weights)]
    saved, trained = group(run, 3, "g_ema"), group(run, 3, "g")
    assert len(saved) == len(trained), "every G variable, BatchNorm moving statistics included"
    for mine, i in zip(average, weights):
        np.testing.assert_allclose(saved[i], mine, rtol=1e-5, atol=1e-6)
        assert not np.allclose(saved[i], trained[i]), "the average lags G"
    statistics = [i for i in range(len(saved)) if i not in weights]
    assert statistics and not any(np.allclose(saved[i], trained[i]) for i in statistics)


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_a_resumed_run_keeps_the_average_bit_identical(tmp_path, tiny_overrides, loop):
    base = [*tiny_overrides, f"train.loop={loop}", "train.ema_decay=0.9", "output.checkpoint_every=1"]
    whole = train.run(load_config(None, [*base, "train.steps=4"]), run_dir=tmp_path / "whole")
    part = crashed_copy(whole, after=2, to=tmp_path / "part")
    train.run(load_config(None, [*base, "train.steps=4"]), run_dir=part, resume=True)
    for name in ("g", "g_ema", "d"):
        assert all(np.array_equal(a, b) for a, b in zip(group(whole, 4, name), group(part, 4, name), strict=True))


def test_without_the_average_nothing_changes(plain_run):
    run = plain_run("train_on_batch")
    assert group(run, 4, "g_ema") == [] and not checkpoint.has_ema(run / "checkpoints" / "step_000004")


def test_a_checkpoint_without_an_average_resumes_with_one_started_from_g(tmp_path, tiny_overrides):
    run = train.run(load_config(None, [*tiny_overrides, "train.steps=2"]), run_dir=tmp_path / "run")
    train.run(load_config(None, [*tiny_overrides, "train.steps=4", "train.ema_decay=0.5"]), run_dir=run,
              resume=True)
    assert len(group(run, 4, "g_ema")) == len(group(run, 4, "g"))


def test_sample_and_evaluate_use_the_average_unless_raw(tmp_path, tiny_overrides):
    run = train.run(load_config(None, [*tiny_overrides, "train.ema_decay=0.5"]), run_dir=tmp_path / "run")
    found = run / "checkpoints" / "step_000004"
    _, averaged = checkpoint.load_generator(found)
    _, raw = checkpoint.load_generator(found, raw=True)
    assert all(np.array_equal(v, a) for v, a in zip(averaged.get_weights(), group(run, 4, "g_ema")))
    assert all(np.array_equal(v, a) for v, a in zip(raw.get_weights(), group(run, 4, "g")))
    outputs = {}
    for flag in ([], ["--raw"]):
        out = tmp_path / f"grid{len(flag)}.png"
        result = CliRunner().invoke(main, ["sample", "--checkpoint", str(run), "--n", "4", "--out", str(out), *flag])
        assert result.exit_code == 0, result.output
        outputs[bool(flag)] = out.read_bytes()
    assert outputs[False] != outputs[True]


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_keeping_the_average_never_changes_the_training(tmp_path, tiny_overrides, loop):
    runs = {decay: train.run(load_config(None, [*tiny_overrides, f"train.loop={loop}", f"train.ema_decay={decay}"]),
                             run_dir=tmp_path / str(decay)) for decay in (0, 0.9)}
    for name in ("g", "d", "g_optimizer", "d_optimizer"):
        assert all(np.array_equal(a, b) for a, b in zip(group(runs[0], 4, name), group(runs[0.9], 4, name),
                                                          strict=True)), name
