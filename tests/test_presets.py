"""The presets the tool's own search found (configs/cifar10.yaml, configs/mnist.yaml): each trains, scores and
resumes as shipped, on the embedded digits fitted to its size, so that a preset that breaks is caught here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan_cli.cli import main
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


def test_the_colour_preset_on_a_flat_folder_says_how_to_train_without_classes(tmp_path):
    """configs/cifar10.yaml draws classes; a folder without class subfolders gets one line naming the two keys to
    set (exit 2, nothing trained), and with them it trains."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(24):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    args = ["train", "--config", str(CONFIGS / "cifar10.yaml"), "--set", "data.name=folder", "--set",
            f"data.path={folder}", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--run-dir", str(tmp_path / "run")]
    for item in SHORT:  # the length and cadences; the data and what scores them are the folder's
        if not item.startswith(("data.", "output.eval_features")):
            args += ["--set", item]
    refused = CliRunner().invoke(main, args, catch_exceptions=False)
    assert refused.exit_code == 2 and "set data.labels=false and" in refused.output
    assert "hacks.class_conditional=false" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "run" / "checkpoints").exists()
    trained = CliRunner().invoke(main, [*args, "--set", "data.labels=false", "--set", "hacks.class_conditional=false",
                                        "--set", "output.eval_every=0"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "samples" / "step_000004.png").is_file()
