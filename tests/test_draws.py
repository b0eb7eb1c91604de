"""The steps' draws: a pure function of (seed, step), the same inside and outside a compiled call, recorded in
checkpoints and continued on resume."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from dcgan_cli.state import checkpoint
from dcgan_cli.training import train
from dcgan_cli.backend import compile_function
from dcgan_cli.config import load_config
from dcgan_cli.state.draws import Draws

from conftest import as_written_before_the_logit_losses


def as_numpy(tree) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(x)) for x in keras.tree.flatten(tree)]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(as_numpy(a), as_numpy(b), strict=True))


@pytest.mark.parametrize("extra", [[], ["hacks.separate_batches=false", "hacks.smooth_fake=true"]])
def test_a_steps_draws_depend_only_on_the_seed_and_the_step(tiny_overrides, extra):
    cfg = load_config(None, [*tiny_overrides, *extra])
    draws = Draws(cfg, count=100)

    def step_draws(step):
        return draws.batch_index(step), *draws.latents_and_plan(step)

    compiled = compile_function(step_draws)
    eager = {step: step_draws(keras.ops.convert_to_tensor(step, "int32")) for step in (5, 3, 4)}
    assert same(eager[3], compiled(keras.ops.convert_to_tensor(3, "int32"))), "compiled or not, the same draws"
    assert same(eager[3], step_draws(keras.ops.convert_to_tensor(3, "int32"))), "drawn again, the same"
    assert not np.array_equal(as_numpy(eager[3])[1], as_numpy(eager[4])[1]), "the next step draws other latents"
    other_seed = Draws(cfg, count=100, seed=cfg.train.seed + 1)
    assert not np.array_equal(as_numpy(other_seed.latents_and_plan(3))[0], as_numpy(eager[3])[1])


def test_batch_indices_are_sorted_draws_with_replacement_over_the_whole_dataset(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.batch_size=32"])
    draws = Draws(cfg, count=50)
    batches = np.stack([as_numpy(draws.batch_index(keras.ops.convert_to_tensor(s, "int32")))[0]
                        for s in range(1, 41)])
    assert batches.dtype == np.int32 and batches.shape == (40, 32)
    assert (np.diff(batches, axis=1) >= 0).all() and batches.min() >= 0 and batches.max() < 50
    assert len(np.unique(batches)) == 50, "every image is drawn in 1,280 draws from 50"
    assert any(len(np.unique(row)) < 32 for row in batches), "with replacement, as the seed's loop draws"


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_the_checkpoint_records_the_draw_state_and_a_resume_continues_it(tmp_path, tiny_overrides, loop):
    base = [*tiny_overrides, f"train.loop={loop}", "output.checkpoint_every=2", "train.seed=7"]
    whole = train.run(load_config(None, [*base, "train.steps=4"]), run_dir=tmp_path / "whole")
    state = json.loads((whole / "checkpoints" / "step_000002" / "state.json").read_text())
    assert state["format"] == checkpoint.FORMAT and state["draws"] == {"seed": 7, "step": 2}
    part = train.run(load_config(None, [*base, "train.steps=2"]), run_dir=tmp_path / "part")
    train.run(load_config(None, [*base, "train.steps=4"]), run_dir=part, resume=True)
    with np.load(whole / "checkpoints" / "step_000004" / "weights.npz") as a, \
            np.load(part / "checkpoints" / "step_000004" / "weights.npz") as b:
        assert all(np.array_equal(a[key], b[key]) for key in a.files)


def test_a_format_1_checkpoint_resumes_with_the_configs_seed(tmp_path, tiny_overrides):
    """Checkpoints written before the device generator kept a host generator's state instead; they still resume."""
    base = [*tiny_overrides, "output.checkpoint_every=2"]
    run = train.run(load_config(None, [*base, "train.steps=2"]), run_dir=tmp_path / "old")
    as_written_before_the_logit_losses(run / "checkpoints" / "step_000002")
    path = run / "checkpoints" / "step_000002" / "state.json"
    state = json.loads(path.read_text())
    state.pop("draws")
    path.write_text(json.dumps({**state, "format": 1, "rng": np.random.default_rng(0).bit_generator.state}))
    train.run(load_config(None, [*base, "train.steps=4"]), run_dir=run, resume=True)
    assert json.loads((run / "checkpoints" / "step_000004" / "state.json").read_text())["draws"] == {
        "seed": 0, "step": 4}
