"""The monitor inside real runs: the moving-statistics collapse is caught, stop and rollback do what they say, a
rollback restores its checkpoint bit for bit and survives a resume, and the run's logs (TensorBoard, losses.png,
progress.gif, `dcgan report`) are written and readable."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan_cli.cli import main
from dcgan_cli.config import ConfigError, load_config
from dcgan_cli.data import sources
from dcgan_cli.nets import hacks
from dcgan_cli.nets.models import build_models
from dcgan_cli.state import checkpoint
from dcgan_cli.training import health, loops, plots, tensorboard_log, train, upkeep
from dcgan_cli.training.monitor import read_events
from dcgan_cli.training.probes import Probe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Measured: with these small networks the moving-statistics run's samples are 0.18-0.30 as varied as the real
# digits from step 50 on; the same run with batch statistics is at 0.72 by step 100 and 0.94-0.98 after.
SMALL = ["model.g_filters=16", "model.d_filters=16", "hacks.learning_rate=1e-3", "train.steps=300",
         "monitor.check_every=50", "monitor.collapse_after=50", "output.eval_every=0", "output.progress=false",
         "output.sample_every=50", "output.checkpoint_every=100"]


def sets(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


@pytest.mark.e2e
def test_the_moving_statistics_run_trips_the_collapse_rule_and_stops_with_its_exit_code(tmp_path):
    run = tmp_path / "moving"
    result = CliRunner().invoke(main, ["train", "--config", str(CONFIGS / "digits.yaml"), "--run-dir", str(run),
                                       *sets(SMALL + ["model.d_bn_in_g_update=moving", "monitor.action=stop"])])
    assert result.exit_code == 3, result.output
    assert "monitor: collapse at step 150" in result.output and "action: stop" in result.output
    assert "monitor: stopped at step 150 of 300 by the collapse rule" in result.output
    events = read_events(run)
    assert [(e["rule"], e["step"], e["since"], e["action"]) for e in events] == [("collapse", 150, 100, "stop")]
    assert events[0]["values"]["diversity"] < 0.5
    assert checkpoint.complete(run)[-1].name == "step_000150"
    assert checkpoint.read_state(checkpoint.complete(run)[-1])["events"] == 1
    assert Image.open(run / plots.LOSSES).size[0] > 500
    assert Image.open(run / plots.PROGRESS).n_frames == 3


@pytest.mark.e2e
def test_the_same_run_with_batch_statistics_trips_nothing(tmp_path):
    run = train.run(load_config(CONFIGS / "digits.yaml", SMALL), run_dir=tmp_path / "batch")
    diversity = [r["probe"]["diversity"] for r in plots.read_metrics(run) if "probe" in r and r["step"] > 50]
    assert read_events(run) == [] and min(diversity) > 0.6


def arrays(groups: dict[str, list]) -> dict[str, np.ndarray]:
    return {f"{group}/{i:04d}": np.array(v.numpy()) for group, variables in groups.items()
            for i, v in enumerate(variables)}


def saved(ckpt: Path) -> dict[str, np.ndarray]:
    with np.load(ckpt / "weights.npz") as found:
        return {key: found[key] for key in found.files}


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_rollbacks_restore_the_named_checkpoint_bit_for_bit_lower_ds_rate_and_survive_a_resume(
        tiny_overrides, tmp_path, monkeypatch, loop):
    # A bound of 0 makes every probe trip: at step 3, since step 3, so the healthy checkpoint is step 2.
    overrides = [*tiny_overrides, f"train.loop={loop}", "train.steps=6", "train.ema_decay=0.9",
                 "monitor.check_every=3", "monitor.max_grad_norm=0", "monitor.action=rollback",
                 "monitor.max_rollbacks=2", "monitor.rollback_lr_factor=0.5"]
    cfg = load_config(None, overrides)
    seen = []
    real_roll_back = health.roll_back

    def spy(cfg, models, request, state, *, run_dir, count):
        before = saved(request.target)
        step, draws, path = real_roll_back(cfg, models, request, state, run_dir=run_dir, count=count)
        seen.append((request.target.name, before, arrays(checkpoint._groups(models)), saved(path), draws.seed,
                     checkpoint.read_state(path)))
        return step, draws, path

    monkeypatch.setattr(train, "roll_back", spy)
    with pytest.raises(upkeep.MonitorStopped, match="stopped at step 3 of 6 by the grad_norm rule"):
        train.run(cfg, run_dir=tmp_path / "run")
    assert len(seen) == 2
    lr_key = next(f"d_optimizer/{i:04d}" for i, path in enumerate(_d_optimizer_paths(cfg))
                  if path.endswith("learning_rate"))
    for number, (name, before, restored, rewritten, seed, state) in enumerate(seen, start=1):
        assert name == "step_000002"
        different = [key for key in before if not np.array_equal(before[key], restored[key])]
        assert different == [lr_key], "everything but D's learning rate is the checkpoint's, bit for bit"
        assert restored[lr_key] == np.float32(before[lr_key] * 0.5)
        assert all(np.array_equal(rewritten[key], restored[key]) for key in restored)
        assert state["draws"] == {"seed": health.rollback_seed(seed_before(seen, number), number), "step": 2}
        assert seed == state["draws"]["seed"] and state["events"] == 2 * number
    events = read_events(tmp_path / "run")
    assert [(e.get("event"), e.get("action")) for e in events] == [
        ("trip", "rollback"), ("rollback", None), ("trip", "rollback"), ("rollback", None), ("trip", "stop")]
    assert "2 of monitor.max_rollbacks=2 rollbacks used" in events[-1]["note"]
    assert [p.name for p in checkpoint.complete(tmp_path / "run")] == ["step_000002", "step_000003"]
    base = 2e-4
    assert saved(tmp_path / "run" / "checkpoints" / "step_000003")[lr_key] == np.float32(np.float32(base * 0.5) * 0.5)

    # Resumed, the run keeps its events and D's lowered rate, and counts its rollbacks from them.
    train.run(cfg, run_dir=tmp_path / "run", resume=True)
    assert [e.get("event") for e in read_events(tmp_path / "run")] == ["trip", "rollback"] * 2 + ["trip"]
    final = saved(tmp_path / "run" / "checkpoints" / "step_000006")
    assert final[lr_key] == np.float32(np.float32(base * 0.5) * 0.5)


def seed_before(seen: list, number: int) -> int:
    """The draws' seed the `number`-th rollback started from: the run's (0), then the previous rollback's."""
    return 0 if number == 1 else seen[number - 2][4]


def _d_optimizer_paths(cfg) -> list[str]:
    from dcgan_cli.nets.models import build_models, build_optimizers

    models = build_models(cfg, np.random.default_rng(0))
    build_optimizers(models)
    return [v.path for v in models.d.optimizer.variables]


def test_rollback_without_a_healthy_checkpoint_stops(tiny_overrides, tmp_path):
    cfg = load_config(None, [*tiny_overrides, "monitor.check_every=2", "monitor.max_grad_norm=0",
                             "monitor.action=rollback"])
    with pytest.raises(upkeep.MonitorStopped, match="step 2 of 4 by the grad_norm rule"):
        train.run(cfg, run_dir=tmp_path / "run")
    (event,) = read_events(tmp_path / "run")
    assert event["action"] == "stop" and event["note"] == "no checkpoint from before step 2 to roll back to"


def test_warn_writes_a_line_and_an_event_and_goes_on(tiny_overrides, tmp_path, capsys):
    cfg = load_config(None, [*tiny_overrides, "monitor.check_every=2", "monitor.max_grad_norm=0"])
    train.run(cfg, run_dir=tmp_path / "run")
    assert "monitor: grad_norm at step 2: gradient norms over the bound 0" in capsys.readouterr().err
    assert [(e["rule"], e["step"], e["action"]) for e in read_events(tmp_path / "run")] == [("grad_norm", 2, "warn")]
    assert checkpoint.complete(tmp_path / "run")[-1].name == "step_000004"


def test_a_nan_is_an_event_and_can_be_rolled_back(tiny_overrides, tmp_path, monkeypatch):
    cfg = load_config(None, [*tiny_overrides, "train.steps=6", "monitor.action=rollback"])
    real_update_g = loops.update_g
    calls = []

    def update_g(models, *g_side):
        calls.append(1)
        loss, norm = real_update_g(models, *g_side)
        return (float("nan") if len(calls) == 3 else loss), norm

    monkeypatch.setattr(loops, "update_g", update_g)
    train.run(cfg, run_dir=tmp_path / "run")
    events = read_events(tmp_path / "run")
    assert [(e.get("rule"), e["step"], e.get("action", e.get("to"))) for e in events] == [
        ("non_finite", 3, "rollback"), ("non_finite", 3, "step_000002")]
    assert checkpoint.complete(tmp_path / "run")[-1].name == "step_000006"


def test_tensorboard_holds_the_scalars_and_grids_and_drops_abandoned_steps(tiny_overrides, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = load_config(None, [*tiny_overrides, "train.steps=6", "output.tensorboard=true", "monitor.check_every=2",
                             "output.sample_every=2"])
    train.run(load_config(None, [*tiny_overrides, "output.tensorboard=true", "monitor.check_every=2",
                                 "output.sample_every=2"]), run_dir=run)
    (run / "checkpoints" / "step_000004" / "COMPLETE").unlink()  # resume from step 2: steps 3-4 are logged again
    train.run(cfg, run_dir=run, resume=True)
    reader = EventAccumulator(str(run / tensorboard_log.DIRECTORY))
    reader.Reload()
    tags = reader.Tags()
    assert {"losses/d_real", "losses/d_fake", "losses/g", "d_output/real", "d_output/fake", "speed/images_per_s",
            "health/diversity", "health/d_grad_norm", "health/g_grad_norm", "gradients/g"} <= set(tags["scalars"])
    assert not {"augment/p", "d_output/real_sign"} & set(tags["scalars"]), "hack 23 is off: no flat lines"
    logged = {r["step"]: r for r in plots.read_metrics(run)}
    g_losses = reader.Scalars("losses/g")
    assert [e.step for e in g_losses] == [2, 4, 6]
    assert [e.value for e in g_losses] == [np.float32(logged[s]["g_loss"]) for s in (2, 4, 6)]
    assert tags["images"] == ["samples"] and [e.step for e in reader.Images("samples")] == [2, 4, 6]
    grid = Image.open(run / "samples" / "step_000006.png")
    assert (reader.Images("samples")[-1].width, reader.Images("samples")[-1].height) == grid.size


def test_scores_become_tensorboard_tags():
    tags = tensorboard_log.scalar_tags({"step": 5, "g_loss": 1.0, "eval": {"frechet_distance": 3.0,
                                                                         "modes_covered": 9, "best": True,
                                                                         "features": "domain"}}, adaptive=False)
    assert tags == {"losses/g": 1.0, "scores/frechet_distance": 3.0, "scores/modes_covered": 9}


def test_without_tensorboard_installed_the_key_is_named(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(tensorboard_log, "available", lambda: False)
    cfg = load_config(None, ["output.tensorboard=true"])
    with pytest.raises(ConfigError, match=r'output.tensorboard: .*pip install "dcgan-cli\[tensorboard\]"'):
        train.run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_plots_gif_and_report(tiny_overrides, tmp_path, monkeypatch):
    run = tmp_path / "run"
    drawn, save_losses = [], plots.save_losses
    monkeypatch.setattr(plots, "save_losses", lambda run_dir, *args, **kwargs: (
        drawn.append(plots.read_metrics(run_dir)[-1]["step"]), save_losses(run_dir, *args, **kwargs))[1])
    train.run(load_config(None, [*tiny_overrides, "monitor.check_every=2", "monitor.max_grad_norm=0",
                                 "output.sample_every=2"]), run_dir=run)
    assert drawn == [2, 4], "drawn with each grid, the last step's included, and not again when the run ends"
    with Image.open(run / plots.LOSSES) as losses:
        assert losses.format == "PNG" and losses.size[1] > 500  # three panels: losses, D's outputs, diversity
    with Image.open(run / plots.PROGRESS) as progress:
        assert progress.format == "GIF" and progress.n_frames == 2
    (run / plots.LOSSES).unlink()
    (run / plots.PROGRESS).unlink()
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "steps        4 of 4" in result.output and "monitor      1 events:" in result.output
    assert "step 2  grad_norm (warn): gradient norms over the bound 0" in result.output
    assert (run / plots.LOSSES).is_file() and (run / plots.PROGRESS).is_file()
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a run directory" in missing.output


@pytest.mark.parametrize("flips", ["true", "false"], ids=["noisy labels", "clean labels"])
def test_d_wins_trips_on_a_run_whose_g_cannot_keep_up_whatever_the_labels(tiny_overrides, tmp_path, flips):
    """G at a learning rate of 1e-7 against D at 1e-3: D is soon sure of every fake (measured: D(G(z)) at 0.03-0.06
    from step 70 with 5% of the labels flipped, below 0.01 from step 60 without)."""
    cfg = load_config(None, [*tiny_overrides, "train.steps=150", "output.log_every=10", "output.sample_every=150",
                             "output.checkpoint_every=150", "monitor.check_every=0", "hacks.ttur=true",
                             "hacks.g_learning_rate=1e-7", "hacks.d_learning_rate=1e-3", f"hacks.noisy_labels={flips}"])
    events = read_events(train.run(cfg, run_dir=tmp_path / "run"))
    assert [e["rule"] for e in events] == ["d_wins"] and events[0]["step"] <= 120
    assert "D is sure of every fake" in events[0]["message"]


def test_the_bar_and_losses_png_show_what_is_on_and_gs_gradient_norm_always(tiny_overrides, tmp_path):
    default = load_config(None, tiny_overrides)
    adaptive = load_config(None, [*tiny_overrides, "hacks.adaptive_augment=true"])
    means = {"d_loss_real": 0.5, "d_loss_fake": 0.4, "g_loss": 1.5, "d_real_mean": 0.7, "d_fake_mean": 0.3,
             "d_real_sign": 0.96, "augment_p": 0.0, "g_grad_norm": 2.5, "images_per_s": 100.0}
    assert "r_t" not in upkeep.postfix(means, default) and " p 0.00" not in upkeep.postfix(means, default)
    assert "G 1.500 grad 2.5 | D(x) 0.70 D(G(z)) 0.30 |" in upkeep.postfix(means, default)
    assert "r_t 0.96 p 0.00 |" in upkeep.postfix(means, adaptive)
    records = [{"step": 50, **means}]

    def shown(cfg, records=records):
        return {key for _, lines in plots.loss_panels(records, cfg) for key, _, _ in lines}

    assert "g_grad_norm" in shown(default) and not {"augment_p", "d_real_sign"} & shown(default)
    assert {"augment_p", "d_real_sign", "g_grad_norm"} <= shown(adaptive)
    probed = [*records, {"step": 100, "probe": {"diversity": 0.9, "d_holdout_gap": 0.1}}]
    assert {"d_holdout_gap", "diversity"} <= shown(default, probed) and "augment_p" not in shown(default, probed)
    run = train.run(default, run_dir=tmp_path / "run")
    logged = [r for r in plots.read_metrics(run) if "g_loss" in r]
    assert logged and all(r["g_grad_norm"] > 0 for r in logged), "G's gradient norm at every log"


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_probing_never_changes_the_training(tiny_overrides, tmp_path, plain_run, loop):
    run = train.run(load_config(None, [*tiny_overrides, f"train.loop={loop}", "monitor.check_every=1"]),
                    run_dir=tmp_path / "probed")
    assert not any("probe" in r for r in plots.read_metrics(plain_run(loop)))
    plain, probed = (saved(r / "checkpoints" / "step_000004") for r in (plain_run(loop), run))
    assert [key for key in plain if not np.array_equal(plain[key], probed[key])] == []
    assert [r["step"] for r in plots.read_metrics(run) if "probe" in r] == [1, 2, 3, 4]


@pytest.mark.parametrize("statistics", ["batch", "moving"])
def test_the_gradient_probe_measures_the_norms_of_the_losses_gradients(tiny_overrides, statistics):
    """Against TensorFlow's tape over the models' own variables, the models called the ordinary way."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the reference is TensorFlow's tape")
    import tensorflow as tf

    cfg = load_config(None, [*tiny_overrides, f"model.d_bn_in_g_update={statistics}"])
    models = build_models(cfg, np.random.default_rng(0))
    latents = hacks.sample_latent(np.random.default_rng(1), 16, cfg.model.latent_dim, hacks=cfg.hacks)
    probe = Probe(cfg, sources.load_dataset(cfg, progress=False).images, latents)
    norms = probe.gradient_norms(models)
    objective = hacks.objective(cfg.hacks)

    def mean_loss(loss, p, label):
        return tf.reduce_mean(loss(tf.concat([tf.fill(tf.shape(p), label)] * 2, axis=1), p))

    # G's first: D's calls in training mode below move D's moving statistics, which G's loss may read.
    with tf.GradientTape() as tape:
        p = models.d(models.g(probe.z, training=True), training=statistics == "batch")
        g_loss = tf.reduce_mean(objective.g_loss(tf.ones_like(p), p))
    g_grads = tape.gradient(g_loss, models.g.trainable_variables)
    fake = models.g(probe.z, training=True)
    with tf.GradientTape() as tape:
        d_loss = mean_loss(objective.d_loss, models.d(probe.real_batch, training=True), 1.0) + mean_loss(
            objective.d_loss, models.d(fake, training=True), 0.0)
    d_grads = tape.gradient(d_loss, models.d.trainable_variables)
    for name, grads in (("d_grad_norm", d_grads), ("g_grad_norm", g_grads)):
        expected = float(np.sqrt(sum(np.sum(np.square(grad.numpy().astype(np.float64))) for grad in grads)))
        assert norms[name] == pytest.approx(expected, rel=1e-4) and expected > 0, name
