"""The presets the tool's own search found (configs/cifar10.yaml, configs/mnist.yaml): each trains, scores and
resumes as shipped, on the embedded digits fitted to its size, so that a preset that breaks is caught here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcgan_cli.config import load_config
from dcgan_cli.training import train

from conftest import crashed_copy, saved_weights

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = ("cifar10.yaml", "mnist.yaml")
# Only the data, the length and the cadences change: the preset's hacks, widths, loop and precision stay.
SHORT = ["data.name=digits", "data.limit=240", "data.labels=true", "train.steps=4", "train.batch_size=8",
         "output.eval_every=2", "output.eval_samples=64", "output.eval_features=domain", "output.checkpoint_every=2",
         "output.keep_checkpoints=2", "output.sample_every=4", "output.log_every=2", "output.n_samples=9",
         "output.progress=false"]


@pytest.mark.parametrize("name", PRESETS)
def test_a_shipped_preset_trains_scores_and_resumes_where_it_stopped(name, tmp_path):
    cfg = load_config(CONFIGS / name, SHORT)
    run = train.run(cfg, run_dir=tmp_path / "run")
    assert (run / "checkpoints" / "best" / "COMPLETE").is_file()
    scores = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert len(scores) == 2, scores
    assert (run / "samples" / "step_000004.png").is_file()

    crashed = crashed_copy(run, after=2, to=tmp_path / "crashed")
    train.run(load_config(crashed / "config.yaml"), run_dir=crashed, resume=True)
    finished, resumed = saved_weights(run, 4), saved_weights(crashed, 4)
    assert finished.keys() == resumed.keys()
    for key in finished:
        np.testing.assert_array_equal(resumed[key], finished[key], err_msg=f"{name}: {key}")
