"""End to end through the `dcgan` command, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from dcgan_cli.cli import main
from dcgan_cli.config import load_config


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def tiny_file(tmp_path, tiny_overrides):
    """The tiny config written as a YAML file, the way a user writes one."""
    raw: dict = {}
    for override in tiny_overrides:
        key, value = override.split("=")
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def invoke(runner, *args):
    return runner.invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["evaluate"], ["ablate"], ["ablate-run"], ["summary"],
                                     ["config"], ["data"]])
def test_every_command_has_help(runner, command):
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_help_does_not_import_keras():
    code = "import sys; from dcgan_cli.cli import main; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.e2e
def test_train_then_sample(runner, tmp_path, tiny_file):
    run_dir = tmp_path / "run"
    result = invoke(runner, "train", "--config", tiny_file, "--run-dir", run_dir, "--set", "train.steps=3",
                    "--set", "output.sample_every=2")
    assert result.exit_code == 0, result.output
    assert (run_dir / "config.yaml").is_file() and load_config(run_dir / "config.yaml").train.steps == 3
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000002", "step_000003"]
    assert (run_dir / "checkpoints" / "step_000003" / "COMPLETE").is_file()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 3]
    with Image.open(run_dir / "samples" / "step_000003.png") as grid:
        assert grid.size == (520, 520)  # 9 images of 16x16 in 3 columns of 17 px + 1, enlarged 10x

    out = tmp_path / "grid.png"
    result = invoke(runner, "sample", "--checkpoint", run_dir, "--n", 16, "--out", out, "--individual",
                    tmp_path / "each")
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.size == (552, 552) and grid.mode == "L"  # 4 x 4 tiles of 17 px + 1, enlarged 8x
    assert len(list((tmp_path / "each").glob("*.png"))) == 16

    result = invoke(runner, "sample", "--checkpoint", run_dir / "checkpoints" / "step_000002", "--n", 2,
                    "--out", tmp_path / "two.png")
    assert result.exit_code == 0 and "step_000002" in result.output


def test_default_run_dir_is_named_after_the_config(runner, tmp_path, tiny_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "train", "--config", tiny_file, "--set", "train.steps=1").exit_code == 0
    assert invoke(runner, "train", "--config", tiny_file, "--set", "train.steps=1").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny", "tiny-2"]


def test_bad_key_exits_2_with_its_path_and_writes_nothing(runner, tmp_path, tiny_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "train", "--config", tiny_file, "--set", "hacks.leaky_rlu=true",
                    "--set", "train.steps=-1")
    assert result.exit_code == 2
    assert "hacks.leaky_rlu: unknown key; did you mean 'leaky_relu'?" in result.output
    assert "train.steps: expected an integer >= 1. Received: -1" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "missing.yaml"], "missing.yaml: cannot read the config file"),
    (["sample", "--checkpoint", "nowhere"], "no such checkpoint or run directory. Received: 'nowhere'"),
    (["sample", "--checkpoint", ".", "--n", "0"], "0 is not in the range x>=1"),
    (["config", "--config", "missing.yaml", "--set", "nonsense"], "cannot read the config file"),
    (["config", "--config", "missing.yaml", "--set", "nonsense"], "expected SECTION.KEY=VALUE"),
])
def test_user_mistakes_exit_2_without_traceback(runner, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_taken_run_dir_is_refused(runner, tmp_path, tiny_file):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    result = invoke(runner, "train", "--config", tiny_file, "--run-dir", tmp_path / "taken")
    assert result.exit_code == 2 and "already holds files" in result.output
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"


def test_config_prints_the_resolved_config(runner, tmp_path, tiny_file):
    result = invoke(runner, "config", "--config", tiny_file, "--set", "hacks.adam=false")
    assert result.exit_code == 0
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(result.output)
    cfg = load_config(resolved)
    assert cfg.hacks.adam is False and cfg.model.image_size == 16 and cfg.hacks.learning_rate == 2e-4


def test_summary_prints_both_models_with_shapes_and_parameter_counts(runner, tiny_file):
    result = invoke(runner, "summary", "--config", tiny_file, "--set", "model.image_size=64",
                    "--set", "model.channels=3", "--set", "model.kernel_size=3", "--set", "model.d_filters=64")
    assert result.exit_code == 0
    rows = {}
    for line in result.output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    assert 'Model: "generator"' in result.output and 'Model: "discriminator"' in result.output
    assert rows["down1 (Conv2D)"] == ("(None, 32, 32, 64)", "1,792")  # the seed's strided-conv example
    assert rows["to_image (Conv2DTranspose)"][0] == "(None, 64, 64, 3)"


def test_summary_of_a_class_conditional_config_sizes_its_class_layers_from_the_data(runner, tiny_file, tmp_path):
    conditional = ("--set", "hacks.class_conditional=true", "--set", "hacks.conditioning=auxiliary",
                   "--set", "data.labels=true")
    result = invoke(runner, "summary", "--config", tiny_file, *conditional)
    assert result.exit_code == 0, result.output
    assert "class_logits (Dense)" in result.output and "(None, 10)" in result.output  # the digits' 10 classes
    missing = tmp_path / "no-such-folder"
    result = invoke(runner, "summary", "--config", tiny_file, *conditional, "--set", "data.name=folder",
                    "--set", f"data.path={missing}")
    assert result.exit_code == 2 and str(missing) in result.output and "Traceback" not in result.output


MNIST_T10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


def digit_pngs(root: Path, count: int = 24) -> Path:
    """A folder of PNG digits in class subfolders: from the real MNIST test set where present, else drawn."""
    if MNIST_T10K.is_dir():
        from dcgan_cli.data.arrays import load_idx_dir

        images, labels = load_idx_dir(MNIST_T10K)
    else:
        images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count) % 10
    for i in range(count):
        (root / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / str(labels[i]) / f"{i:05d}.png")
    return root


def test_data_command_shows_the_dataset_and_writes_real_png(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digit_pngs(tmp_path / "pngs")
    result = invoke(runner, "data", "--config", write_yaml(tmp_path, {
        "data": {"name": "folder", "path": "pngs", "cache_dir": "cache"}, "model": {"image_size": 28}}))
    assert result.exit_code == 0, result.output
    assert "images:      24" in result.output and "(24, 28, 28, 1) uint8" in result.output
    assert "cache:       cache/folder-" in result.output
    with Image.open(tmp_path / "real.png") as grid:
        assert grid.size[0] >= 512


def write_yaml(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.e2e
def test_train_on_a_folder_of_pngs(runner, tmp_path, tiny_overrides):
    digit_pngs(tmp_path / "pngs")
    config = write_yaml(tmp_path, {"data": {"name": "folder", "path": str(tmp_path / "pngs"),
                                            "cache_dir": str(tmp_path / "cache")}})
    result = invoke(runner, "train", "--config", config, "--run-dir", tmp_path / "run",
                    *[arg for o in tiny_overrides for arg in ("--set", o)], "--set", "train.steps=2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()


LFW_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-faces"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.skipif(not LFW_FACES.is_dir(), reason="../shared/data/lfw-faces is not here")
@pytest.mark.e2e
def test_dcgan64_trains_samples_and_scores_on_face_photos(runner, tmp_path):
    """The 64x64 shape path of configs/dcgan64.yaml (5x5 kernels, four doublings) on 48 of the LFW photos,
    150x150 JPEGs that the folder loader resizes and crops, at a sixteenth of its widths: trained with a label-free
    score during training, then sampled and scored as a user would."""
    photos = tmp_path / "faces"
    photos.mkdir()
    for path in sorted(LFW_FACES.glob("*.jpg"))[:48]:
        shutil.copy(path, photos / path.name)
    sets = ["data.path=" + str(photos), f"data.cache_dir={tmp_path / 'cache'}", "model.g_filters=8",
            "model.d_filters=4", "model.max_filters=64", "train.batch_size=8", "train.steps=4",
            "output.log_every=2", "output.sample_every=4", "output.checkpoint_every=4", "output.eval_every=4",
            "output.eval_samples=48", "output.progress=false", "monitor.check_every=2"]
    result = invoke(runner, "train", "--config", CONFIGS / "dcgan64.yaml", "--run-dir", tmp_path / "run",
                    *[arg for item in sets for arg in ("--set", item)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["eval"]["features"] == "rotation" and np.isfinite(records[-1]["eval"]["frechet_distance"])
    assert all(0 < r["d_fake_mean"] < 1 and r["g_grad_norm"] > 0 for r in records if "g_loss" in r)
    with Image.open(tmp_path / "run" / "samples" / "step_000004.png") as grid:
        assert grid.mode == "RGB" and grid.size[0] >= 512
    sample = invoke(runner, "sample", "--checkpoint", tmp_path / "run", "--n", "4", "--out", tmp_path / "four.png")
    assert sample.exit_code == 0, sample.output
    scored = invoke(runner, "evaluate", "--checkpoint", tmp_path / "run", "--n", "24", "--features", "rotation",
                    "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["scores"]["bins"] > 0


@pytest.mark.skipif(not MNIST_T10K.is_dir(), reason="../shared/data/mnist-t10k is not here")
@pytest.mark.e2e
def test_train_on_the_mnist_idx_files_directly(runner, tmp_path, tiny_overrides):
    config = write_yaml(tmp_path, {"data": {"name": "mnist", "path": str(MNIST_T10K)}})
    result = invoke(runner, "train", "--config", config, "--run-dir", tmp_path / "run",
                    *[arg for o in tiny_overrides for arg in ("--set", o)], "--set", "model.image_size=28",
                    "--set", "train.steps=2")
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "run" / "config.yaml").data.name == "mnist"


def test_missing_data_exits_2_before_anything_is_written(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_yaml(tmp_path, {"data": {"name": "folder", "path": "nowhere"}})
    for command in ("train", "data"):
        result = invoke(runner, command, "--config", config)
        assert result.exit_code == 2 and "data.path: no such folder. Received: 'nowhere'" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.yaml"]
    result = invoke(runner, "train", "--config", write_yaml(tmp_path, {"data": {"name": "npz"}}))
    assert result.exit_code == 2 and "data.path: required when data.name is npz. Received: None" in result.output


ENGINE_LOG = ("E0000", "W0000", "I0000", "WARNING: All log messages")  # absl's C++ log lines, and its notice


@pytest.mark.parametrize("backend, loop", [("tensorflow", "compiled"), ("jax", "train_on_batch")])
@pytest.mark.e2e
@pytest.mark.usefixtures("tiny_scores")
def test_a_healthy_run_prints_no_engine_log_lines(tmp_path, tiny_file, backend, loop):
    """TensorFlow's grappler logs "E0000 ... remapper failed" for D's biased convolution before LeakyReLU in the
    compiled step, and importing TensorFlow under another backend prints absl's start-up lines: neither reaches
    a user's terminal from a run that is fine (scores and probes included)."""
    if backend == "jax":
        pytest.importorskip("jax")
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    run = subprocess.run([sys.executable, "-m", "dcgan_cli", "train", "--config", str(tiny_file), "--run-dir",
                          str(tmp_path / "run"), "--set", f"train.loop={loop}", "--set", "output.eval_every=2",
                          "--set", "output.eval_samples=20", "--set", "monitor.check_every=2"],
                         capture_output=True, text=True, env={**env, "KERAS_BACKEND": backend}, timeout=600)
    assert run.returncode == 0, run.stderr
    engine = [line for line in run.stderr.splitlines() if line.startswith(ENGINE_LOG)]
    assert not engine, engine
    assert "done: samples in" in run.stderr
    assert "training the domain classifier" not in run.stderr  # the cached one, trained by TensorFlow, serves JAX
