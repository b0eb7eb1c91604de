"""The presets the tool's own search found: the labelled ones (configs/cifar10.yaml, configs/mnist.yaml) train,
score and resume as shipped on the embedded digits fitted to their size; the photo presets (configs/photos*.yaml)
on a tiny folder of unlabelled colour photos, where they are also sampled and their documented commands run, so
that a preset that breaks is caught here."""

from __future__ import annotations

from pathlib import Path

import shlex

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
PHOTO_PRESETS = ("photos32.yaml",)
# Only the data, the length and the cadences change: the preset's hacks, widths, loop and precision stay.
SHORT = ["data.name=digits", "data.limit=240", "data.labels=true", "train.steps=4", "train.batch_size=8",
         "output.eval_every=2", "output.eval_samples=64", "output.eval_features=domain", "output.checkpoint_every=2",
         "output.keep_checkpoints=2", "output.sample_every=4", "output.log_every=2", "output.n_samples=9",
         "output.progress=false"]


def assert_resumes_where_it_stopped(run: Path, crashed: Path, name: str) -> None:
    """A copy of the finished 4-step run, cut back to its step-2 checkpoint, resumes to the same weights bit for
    bit."""
    crashed = crashed_copy(run, after=2, to=crashed)
    train.run(load_config(crashed / "config.yaml"), run_dir=crashed, resume=True)
    finished, resumed = saved_weights(run, 4), saved_weights(crashed, 4)
    assert finished.keys() == resumed.keys()
    for key in finished:
        np.testing.assert_array_equal(resumed[key], finished[key], err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", PRESETS)
def test_a_shipped_preset_trains_scores_and_resumes_where_it_stopped(name, tmp_path):
    cfg = load_config(CONFIGS / name, SHORT)
    run = train.run(cfg, run_dir=tmp_path / "run")
    assert (run / "checkpoints" / "best" / "COMPLETE").is_file()
    scores = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert len(scores) == 2, scores
    assert (run / "samples" / "step_000004.png").is_file()

    assert_resumes_where_it_stopped(run, tmp_path / "crashed", name)


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


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """48 colour photos of another size than the presets', in two subfolders and no classes (the subfolders hold
    unlike counts of unlike things, as a user's do)."""
    root = tmp_path_factory.mktemp("photos") / "my_photos"
    rng = np.random.default_rng(0)
    for k in range(48):
        folder = root / ("holiday" if k < 30 else "garden")
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, 3)
        image = np.clip(base + rng.normal(0, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{k}.jpg")
    return root


def photo_overrides(folder: Path, cache: Path) -> list[str]:
    """The folder, and a short length with every duty due: what a photo preset's tests change, and nothing else."""
    return [f"data.path={folder}", f"data.cache_dir={cache}", "train.steps=4", "train.batch_size=8",
            "output.eval_every=2", "output.eval_samples=64", "output.checkpoint_every=2", "output.keep_checkpoints=2",
            "output.sample_every=4", "output.log_every=2", "output.n_samples=9", "output.progress=false"]


@pytest.mark.parametrize("name", PHOTO_PRESETS)
def test_a_photo_preset_trains_scores_samples_and_resumes_where_it_stopped_on_an_unlabelled_folder(
        name, photo_folder, tmp_path):
    cfg = load_config(CONFIGS / name, photo_overrides(photo_folder, tmp_path / "cache"))
    assert cfg.data.name == "folder" and not cfg.data.labels and not cfg.hacks.class_conditional
    run = train.run(cfg, run_dir=tmp_path / "run")
    scores = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert len(scores) == 2 and all('"features": "rotation"' in line for line in scores), scores
    sampled = CliRunner().invoke(main, ["sample", "--checkpoint", str(run), "--n", "16", "--out",
                                        str(tmp_path / "sheet.png")], catch_exceptions=False)
    assert sampled.exit_code == 0, sampled.output
    assert Image.open(tmp_path / "sheet.png").size[0] >= 4 * cfg.model.image_size

    assert_resumes_where_it_stopped(run, tmp_path / "crashed", name)


def documented_commands(path: Path) -> list[list[str]]:
    """The `dcgan ...` commands in a config's comment lines, continuation backslashes joined, as argument lists."""
    text, commands = "", []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text += line.lstrip("#").strip() + "\n"
    for command in text.replace("\\\n", " ").splitlines():
        if command.startswith("dcgan "):
            commands.append(shlex.split(command)[1:])
    return commands


@pytest.mark.parametrize("name", PHOTO_PRESETS)
def test_the_commands_in_a_photo_presets_comment_run_for_a_step(name, photo_folder, tmp_path):
    commands = documented_commands(CONFIGS / name)
    assert commands and all(args[0] == "train" for args in commands), commands
    for k, args in enumerate(commands):
        assert f"configs/{name}" in args and any(a.startswith("data.path=") for a in args), args
        args = [str(CONFIGS.parent / a) if a.startswith("configs/") else a for a in args]
        args = [f"data.path={photo_folder}" if a.startswith("data.path=") else a for a in args]
        short = ["train.steps=1", "train.batch_size=8", "output.eval_every=0", "output.sample_every=1",
                 "output.checkpoint_every=1", "output.progress=false", f"data.cache_dir={tmp_path / 'cache'}"]
        result = CliRunner().invoke(main, [*args, *[a for item in short for a in ("--set", item)],
                                           "--run-dir", str(tmp_path / f"run{k}")], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        assert (tmp_path / f"run{k}" / "checkpoints" / "step_000001" / "COMPLETE").is_file()
