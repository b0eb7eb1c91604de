"""Checkpoints: written whole or not at all, found, pruned, loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.nets import losses
from dcgan_cli.state import checkpoint
from dcgan_cli.state.draws import DrawState
from dcgan_cli.nets.models import build_models
from dcgan_cli.training import train

from conftest import as_written_before_the_logit_losses


def save(run_dir, cfg, step, models, latents):
    return checkpoint.save(run_dir, step=step, models=models, cfg=cfg, draws=DrawState(seed=5, step=step),
                           sample_latents=latents)


@pytest.fixture
def models(tiny_cfg):
    return build_models(tiny_cfg, np.random.default_rng(0))


def test_saved_checkpoint_holds_everything_and_reloads_g(tmp_path, tiny_cfg, models):
    latents = np.ones((9, 8), np.float32)
    path = save(tmp_path, tiny_cfg, 7, models, latents)
    assert path.name == "step_000007"
    assert sorted(p.name for p in path.iterdir()) == [
        "COMPLETE", "config.yaml", "sample_latents.npy", "state.json", "weights.npz"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000007"]
    cfg, g = checkpoint.load_generator(path)
    assert cfg == tiny_cfg
    z = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(g.predict_on_batch(z), models.g.predict_on_batch(z))


def test_resolve_takes_the_newest_complete_checkpoint(tmp_path, tiny_cfg, models):
    latents = np.zeros((9, 8), np.float32)
    for step in (2, 10, 4):
        save(tmp_path, tiny_cfg, step, models, latents)
    half = tmp_path / "checkpoints" / "step_000020"
    half.mkdir()  # a crash before COMPLETE was written
    (tmp_path / "checkpoints" / ".tmp-step_000030").mkdir()
    assert checkpoint.resolve(tmp_path).name == "step_000010"
    assert checkpoint.resolve(tmp_path / "checkpoints" / "step_000002").name == "step_000002"
    assert [p.name for p in checkpoint.complete(tmp_path)] == ["step_000002", "step_000004", "step_000010"]


def test_prune_keeps_the_newest(tmp_path, tiny_cfg, models):
    for step in (1, 2, 3, 4):
        save(tmp_path, tiny_cfg, step, models, np.zeros((1, 8), np.float32))
    checkpoint.prune(tmp_path, keep=2)
    assert [p.name for p in checkpoint.complete(tmp_path)] == ["step_000003", "step_000004"]


def test_a_crash_halfway_through_a_prune_leaves_no_complete_checkpoint_with_files_missing(tmp_path, tiny_cfg,
                                                                                        models, monkeypatch):
    """A SIGKILL while the oldest checkpoint's files are being deleted: the loaders never see it half gone, and the
    next start removes what is left."""
    for step in (1, 2, 3):
        save(tmp_path, tiny_cfg, step, models, np.zeros((1, 8), np.float32))

    def killed_after_one_file(path, ignore_errors=False):
        for file in sorted(Path(path).iterdir()):
            if file.name != checkpoint.MARKER:
                file.unlink()
                raise SystemExit("killed")

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_after_one_file)
    with pytest.raises(SystemExit):
        checkpoint.prune(tmp_path, keep=2)
    monkeypatch.undo()
    for found in checkpoint.complete(tmp_path):
        assert len(list(found.iterdir())) == 5, found
    assert [p.name for p in checkpoint.complete(tmp_path)] == ["step_000002", "step_000003"]
    checkpoint.remove_temporaries(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000002", "step_000003"]


def test_resolve_errors_name_the_path(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint or run directory. Received: '.*nope'"):
        checkpoint.resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="not a complete checkpoint.*Received: '.*empty'"):
        checkpoint.resolve(tmp_path / "empty")


def test_corrupt_weights_are_a_clear_error(tmp_path, tiny_cfg, models):
    path = save(tmp_path, tiny_cfg, 1, models, np.zeros((1, 8), np.float32))
    (path / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(checkpoint.CheckpointError, match="cannot load weights.npz"):
        checkpoint.load_generator(path)


def test_a_checkpoint_from_before_the_logit_losses_resumes_reading_d_as_its_run_did(tiny_overrides, tmp_path):
    cfg = load_config(None, [*tiny_overrides, "train.steps=2"])
    run = train.run(cfg, run_dir=tmp_path / "run")
    old = run / "checkpoints" / "step_000002"
    assert checkpoint.read_state(old)["format"] == checkpoint.FORMAT == 3
    as_written_before_the_logit_losses(old)
    shutil.copy(old / "config.yaml", run / "config.yaml")
    models = build_models(cfg, np.random.default_rng(1))
    assert checkpoint.restore(old, models, cfg).format == 2
    with np.load(old / "weights.npz") as saved:
        assert all(np.array_equal(v.numpy(), saved[f"d/{i:04d}"]) for i, v in enumerate(models.d.weights))
    # The D that wrote it ended in a sigmoid on the same layers: this D's belief is that sigmoid, unchanged.
    sigmoid_d = keras.Model(models.d.input, keras.layers.Activation("sigmoid")(models.d.output))
    x = np.random.default_rng(2).uniform(-1, 1, (5, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.probability(models.d(x, training=False))),
                               keras.ops.convert_to_numpy(sigmoid_d(x, training=False)), rtol=1e-6)
    result = CliRunner().invoke(main, ["train", "--resume", "--run-dir", str(run), "--set", "train.steps=4"])
    assert result.exit_code == 0, result.output
    assert "was written when D ended in a sigmoid" in result.output
    assert checkpoint.read_state(run / "checkpoints" / "step_000004")["format"] == 3
    sample = CliRunner().invoke(main, ["sample", "--checkpoint", str(old), "--n", "4", "--out",
                                       str(tmp_path / "old.png")])
    assert sample.exit_code == 0, sample.output


def test_a_checkpoint_of_a_newer_format_is_refused_in_one_line(tiny_overrides, tmp_path):
    run = train.run(load_config(None, [*tiny_overrides, "train.steps=2"]), run_dir=tmp_path / "run")
    state_path = run / "checkpoints" / "step_000002" / "state.json"
    state_path.write_text(json.dumps({**json.loads(state_path.read_text()), "format": 99}))
    result = CliRunner().invoke(main, ["train", "--resume", "--run-dir", str(run), "--set", "train.steps=4"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "format 99, written by a newer dcgan-cli than this one (format 3); upgrade" in result.output
    assert not (run / "checkpoints" / "step_000004").exists()
