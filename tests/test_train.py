"""The split loop trains the right network: D on D updates, G on G updates, D's BN as in the DCGAN reference."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from dcgan_cli import backend
from dcgan_cli.data import sources
from dcgan_cli.state import draws
from dcgan_cli.nets import losses
from dcgan_cli.training import loops, rundir, train
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.config import load_config
from dcgan_cli.nets.models import build_models


def setup(tiny_overrides, *extra):
    """A tiny config's models and one step's inputs as the train_on_batch loop makes them: D's batches (x, targets)
    and G's (inputs, targets) (the latents z, and 1s), with `prepare` to make them again (G's fakes from its current
    weights)."""
    cfg = load_config(None, [*tiny_overrides, *extra])
    models = build_models(cfg, np.random.default_rng(0))
    images = sources.load_dataset(cfg, progress=False).images
    prepare = loops.step_preparer(models.g, draws.Draws(cfg, count=len(images)), resident=True)
    source = keras.ops.convert_to_tensor(images)
    batches, *g_side = prepare(source, 1)
    return cfg, models, lambda: prepare(source, 1), batches, g_side


def snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    """Every variable of the model (weights and BatchNorm moving statistics), by path."""
    return {v.path: np.array(v.numpy()) for v in model.weights}


def changed(before: dict, after: dict) -> set[str]:
    return {path for path in before if not np.array_equal(before[path], after[path])}


def is_statistic(path: str) -> bool:
    return "moving_" in path


@pytest.mark.parametrize("separate", ["true", "false"])
def test_d_update_trains_d_only_and_g_update_trains_g_only(tiny_overrides, separate):
    """Starting with a G update, so that each update must set d.trainable itself (on TensorFlow the flag is
    read when a model's train function is first traced; on JAX at every call)."""
    cfg, models, prepare, batches, g_side = setup(tiny_overrides, f"hacks.separate_batches={separate}")
    assert any(is_statistic(path) for path in snapshot(models.d))
    for _ in range(2):
        d_before, g_before = snapshot(models.d), snapshot(models.g)
        g_loss, g_norm = loops.update_g(models, *g_side)
        d_after, g_after = snapshot(models.d), snapshot(models.g)
        assert changed(d_before, d_after) == set(), "D's weights and moving statistics stay put on a G update"
        assert changed(g_before, g_after) == set(g_before), "every G weight and statistic moves on a G update"
        assert np.isfinite(g_loss) and np.isfinite(g_norm) and g_norm > 0

        d_before, g_before = d_after, g_after
        logs = loops.update_d(models, prepare()[0], cfg=cfg)
        d_after, g_after = snapshot(models.d), snapshot(models.g)
        assert changed(d_before, d_after) == set(d_before), "every D weight and statistic moves on a D update"
        assert changed(g_before, g_after) == set(), "G stays put on a D update"
        assert set(logs) == {"d_loss_real", "d_loss_fake", "d_real_mean", "d_fake_mean", "d_real_sign",
                             "d_real_score", "d_fake_score"}


def test_the_naive_keras2_recipe_leaves_d_untrained(tiny_overrides):
    """Guard for the test above: Keras 3 ignores compile-time freezing, so 'freeze D once after compiling it'
    (the Keras 2 recipe) silently stops D from learning; the loop must set d.trainable before every update."""
    cfg, models, prepare, batches, g_side = setup(tiny_overrides)
    models.d.trainable = False
    before = snapshot(models.d)
    real, targets = batches[0]
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        models.d.train_on_batch(real, targets)
    assert changed(before, snapshot(models.d)) == set()


@pytest.mark.parametrize("mode", ["batch", "moving"])
def test_in_the_g_update_d_uses_the_configured_batch_norm_statistics(tiny_overrides, mode):
    cfg, models, prepare, batches, g_side = setup(tiny_overrides, f"model.d_bn_in_g_update={mode}",
                                             "hacks.init_stddev=0.3")
    for _ in range(3):
        loops.update_d(models, batches, cfg=cfg)
    fakes = prepare()[0][1][0]  # the all-fake batch of G's current fakes (hack 9 on)
    models.d.trainable = True
    p_batch, _ = models.d.stateless_call([v.value for v in models.d.trainable_variables],
                                         [v.value for v in models.d.non_trainable_variables], fakes, training=True)
    p_moving = models.d(fakes, training=False)
    ones = np.ones((len(g_side[0]), 1), np.float32)
    loss_batch = float(keras.ops.mean(losses.g_loss(ones, p_batch)))
    loss_moving = float(keras.ops.mean(losses.g_loss(ones, p_moving)))
    assert abs(loss_batch - loss_moving) > 0.01, "the two statistics must give visibly different outputs"
    g_loss, _ = loops.update_g(models, *g_side)
    expected = loss_batch if mode == "batch" else loss_moving
    assert g_loss == pytest.approx(expected, rel=1e-4)


def test_the_g_update_reports_the_norm_of_the_gradient_it_applied(tiny_overrides):
    cfg, models, prepare, batches, g_side = setup(tiny_overrides)
    g, d = models.g, models.d
    z, ones = g_side
    d.trainable = False
    d_values = ([v.value for v in d.trainable_variables], [v.value for v in d.non_trainable_variables])

    def g_objective(values):
        images, _ = g.stateless_call(values, [v.value for v in g.non_trainable_variables], z, training=True)
        scores, _ = d.stateless_call(*d_values, images, training=True)
        return keras.ops.mean(losses.g_loss(ones, scores)), None

    _, _, grads = backend.input_gradient(g_objective, [v.value for v in g.trainable_variables])
    expected = np.sqrt(sum(float(np.sum(np.square(keras.ops.convert_to_numpy(grad)))) for grad in grads))
    _, g_norm = loops.update_g(models, *g_side)
    assert expected > 0 and g_norm == pytest.approx(expected, rel=1e-4)


def test_fakes_come_from_g_in_training_mode_without_side_effects(tiny_overrides):
    cfg, models, prepare, batches, g_side = setup(tiny_overrides)
    models.d.trainable = False
    loops.update_g(models, *g_side)  # moving statistics now differ from the batch's
    before = snapshot(models.g)
    batches, z, _ = prepare()
    fakes = keras.ops.convert_to_numpy(batches[1][0])  # the all-fake batch (hack 9 on)
    assert changed(before, snapshot(models.g)) == set()
    expected, _ = models.g.stateless_call([v.value for v in models.g.trainable_variables],
                                          [v.value for v in models.g.non_trainable_variables], z, training=True)
    np.testing.assert_allclose(fakes, keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fakes, models.g.predict_on_batch(z), atol=1e-3)


@pytest.mark.parametrize("separate", ["true", "false"])
def test_train_step_reports_every_metric_per_source(tiny_overrides, separate):
    cfg, models, prepare, batches, g_side = setup(tiny_overrides, f"hacks.separate_batches={separate}",
                                             "hacks.label_smoothing=false", "hacks.noisy_labels=false")
    logs = loops.train_step(models, batches, *g_side, cfg=cfg)
    assert set(logs) == {*METRICS, "d_real_score", "d_fake_score"} and all(np.isfinite(v) for v in logs.values())
    assert (logs["d_real_mean"] > 0.5) == (logs["d_real_score"] > 0), "the raw score is the probability's logit"
    assert 0 < logs["d_real_mean"] < 1 and 0 < logs["d_fake_mean"] < 1
    # with hard labels, D's loss on each source is -log D(x) and -log(1 - D(G(z))) averaged: both positive
    assert logs["d_loss_real"] > 0 and logs["d_loss_fake"] > 0


def test_run_writes_the_run_directory(tmp_path, tiny_overrides):
    run_dir = train.run(load_config(None, [*tiny_overrides, "output.sample_every=2"]), run_dir=tmp_path / "run")
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert set(lines[0]) == {"step", *METRICS, "images_per_s", "precision", "wall_s"}
    assert lines[0]["precision"] == "off"
    assert load_config(run_dir / "config.yaml").output.run_dir == str(run_dir)
    assert (run_dir / "losses.png").is_file() and (run_dir / "progress.gif").is_file()
    assert not (run_dir / "events.jsonl").exists() and not (run_dir / "tensorboard").exists()


def test_same_seed_same_run(tmp_path, tiny_cfg):
    first = train.run(tiny_cfg, run_dir=tmp_path / "a")
    second = train.run(tiny_cfg, run_dir=tmp_path / "b")
    for name in ("step_000004.png",):
        assert (first / "samples" / name).read_bytes() == (second / "samples" / name).read_bytes()


def test_run_dir_choice(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(rundir.choose_new(tiny_cfg, config_name="digits")) == "runs/digits"
    (tmp_path / "runs" / "digits").mkdir(parents=True)
    assert str(rundir.choose_new(tiny_cfg, config_name="digits")) == "runs/digits-2"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(rundir.RunDirError, match="already holds files.*Received: 'taken'"):
        rundir.choose_new(tiny_cfg, config_name="digits", explicit="taken")
    (tmp_path / "empty").mkdir()
    assert str(rundir.choose_new(tiny_cfg, config_name="digits", explicit="empty")) == "empty"
