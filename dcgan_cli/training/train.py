"""A training run: `run` loads the data, builds G and D and trains them into the run directory; `_steps` is the
loop of DCGAN training, per step (1) update D on real and fake images, (2) update G through a frozen D
(training/loops.py), with what a run does around its steps (training/upkeep.py): logs, sample grids, scores and
the best checkpoint, checkpoints, the monitor, clean stops.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from dcgan_cli import backend, images
from dcgan_cli import config as config_module
from dcgan_cli.config import Config, ConfigError
from dcgan_cli.data import sources
from dcgan_cli.evaluate.scoring import TrainingScorer, preflight
from dcgan_cli.files import write_atomically
from dcgan_cli.nets import hacks
from dcgan_cli.nets.ema import calibrate_ema
from dcgan_cli.nets.models import Classes, Models, build_models
from dcgan_cli.signals import StopRequest
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.training import tensorboard_log
from dcgan_cli.training.health import Health, RollBack, roll_back
from dcgan_cli.training.loops import CompiledLoop, SplitLoop
from dcgan_cli.training.runlog import RunLog
from dcgan_cli.training.upkeep import (
    BestKeeper,
    Diverged,
    Interrupted,
    Judge,
    MonitorStopped,
    Pruned,
    Window,
    diverged,
    due,
    postfix,
    sample_grid,
    writing,
)


def run(cfg: Config, *, run_dir: str | Path, resume: bool = False, judge: Judge | None = None) -> Path:
    """Train into `run_dir` (config.yaml, samples/, checkpoints/, metrics.jsonl), from scratch or, with `resume`,
    from its newest complete checkpoint (if any), continuing bit for bit where the interrupted run left off.
    `judge` sees each output.eval_every score and may stop the run early (Pruned)."""
    run_dir = Path(run_dir)
    cfg = config_module.replace_value(cfg, "output.run_dir", str(run_dir))
    if cfg.train.distribution != "off" and cfg.train.loop == "compiled" and keras.backend.backend() != "jax":
        raise ConfigError(["train.distribution: data_parallel with train.loop compiled needs the JAX backend "
                           "(use train.loop: train_on_batch on TensorFlow). Received: data_parallel"])
    if cfg.output.tensorboard and not tensorboard_log.available():
        raise ConfigError([f"output.tensorboard: TensorBoard is not installed; {tensorboard_log.INSTALL}, or set "
                           "output.tensorboard: false. Received: true"])
    if cfg.output.eval_every:
        preflight(cfg, cfg.output.eval_features, key="output.eval_features")
    keras.utils.set_random_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    dataset = sources.load_dataset(cfg, progress=cfg.output.progress)
    classes = Classes.of(dataset) if cfg.hacks.class_conditional else None  # hack 21
    scorer = TrainingScorer(cfg, dataset) if cfg.output.eval_every else None
    with backend.data_parallel(cfg.train.distribution == "data_parallel", batch_size=cfg.train.batch_size) as count:
        if count > 1:
            print(f"data parallel over {count} devices: {', '.join(backend.local_devices())}", file=sys.stderr)
        with backend.precision(cfg.train.mixed_precision):
            models = build_models(cfg, rng, classes)
        _train(cfg, models, dataset.images, None if classes is None else dataset.labels, rng, run_dir=run_dir,
               resume=resume, scorer=scorer, held_out=(dataset.held_out, dataset.held_out_labels), judge=judge)
    return run_dir


def _train(cfg: Config, models: Models, real_images: np.ndarray, real_labels: np.ndarray | None,
           rng: np.random.Generator, *, run_dir: Path, resume: bool, scorer: TrainingScorer | None,
           held_out: tuple = (None, None), judge: Judge | None = None) -> None:
    """Restore the newest checkpoint when resuming, prepare the run directory, and run the loop (`real_labels`:
    the images' classes, for hack 21; `held_out`: data.holdout's images and labels, for the monitor; `judge`: see
    run). The host's `rng` has drawn the initial weights; it draws the sample grids' latents here, the steps' draws
    come from the device."""
    sample_latents = hacks.sample_latent(rng, cfg.output.n_samples, cfg.model.latent_dim, hacks=cfg.hacks)
    start, resumed_from, seed, events = 0, None, cfg.train.seed, 0
    checkpoint.remove_temporaries(run_dir)
    found = checkpoint.complete(run_dir) if resume else []
    if found:
        restored = checkpoint.restore(found[-1], models, cfg)
        start, sample_latents, resumed_from = restored.step, restored.sample_latents, restored.path
        seed, events = restored.draws.seed, restored.events
        if restored.format < checkpoint.LOGITS and not cfg.hacks.hinge_loss:
            print(f"{restored.path} was written when D ended in a sigmoid and its losses read probabilities: D's "
                  "weights are the same, the sigmoid is in the loss now, and from here on both losses are on D's raw "
                  "score, which keeps G's gradient when D is sure (docs/resuming.md)", file=sys.stderr)
    with writing(run_dir, resumed_from):
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / "config.yaml", lambda file: file.write(config_module.to_yaml(cfg).encode()))
        log = RunLog(run_dir, cfg, start=start, events=events)
    keeper = BestKeeper(scorer, run_dir, resume=resume, judge=judge) if scorer is not None else None
    health = Health(cfg, real_images, sample_latents, log, start=start, classes=models.classes,
                    real_labels=real_labels, held_out=held_out)
    step_draws = draws.Draws(cfg, count=len(real_images), seed=seed, classes=models.classes)
    try:
        _loop(cfg, models, real_images, real_labels, step_draws, sample_latents, run_dir=run_dir, start=start,
              resumed_from=resumed_from, keeper=keeper, log=log, health=health)
    finally:
        log.close()


def _loop(cfg: Config, models: Models, real_images: np.ndarray, real_labels: np.ndarray | None,
          step_draws: draws.Draws, sample_latents: np.ndarray, *, run_dir: Path, start: int, resumed_from: Path | None,
          keeper: BestKeeper | None, log: RunLog, health: Health) -> None:
    """Steps start+1 .. train.steps, with logging, sample grids, scores and the best checkpoint, checkpoints, the
    monitor and its rollbacks, and clean stops; the loop's prefetching thread, if any, is stopped however they
    end."""
    while True:
        loop = (CompiledLoop if cfg.train.loop == "compiled" else SplitLoop)(models, cfg, real_images, step_draws,
                                                                                real_labels)
        try:
            _steps(cfg, models, loop, step_draws, sample_latents, run_dir=run_dir, start=start,
                   resumed_from=resumed_from, keeper=keeper, log=log, health=health)
            log.finish()
            return
        except RollBack as request:
            rollback = request
        finally:
            loop.close()
        with writing(run_dir, rollback.target):
            start, step_draws, resumed_from = roll_back(cfg, models, rollback, health, run_dir=run_dir,
                                                         count=len(real_images))


def _steps(cfg: Config, models: Models, loop: SplitLoop | CompiledLoop, step_draws: draws.Draws,
           sample_latents: np.ndarray, *, run_dir: Path, start: int, resumed_from: Path | None,
           keeper: BestKeeper | None, log: RunLog, health: Health) -> None:
    """The steps of _loop, run by `loop`."""
    steps, out, batch_size = cfg.train.steps, cfg.output, cfg.train.batch_size
    last_saved, saved_step, read_step = resumed_from, start, start
    window = Window()

    def save(step: int) -> Path:
        with writing(run_dir / checkpoint.CHECKPOINTS / f"step_{step:06d}", last_saved):
            path = checkpoint.save(run_dir, step=step, models=models, cfg=cfg, draws=step_draws.state(step),
                                   sample_latents=sample_latents, events=len(log.events))
            checkpoint.prune(run_dir, keep=out.keep_checkpoints, protect=resumed_from)
        return path

    def non_finite(step: int, since: int, values: dict, what: str) -> Diverged:
        """A NaN or infinity: an event, then a rollback where monitor.action allows one, else Diverged."""
        trip = health.monitor.non_finite(step, since, values)
        action, target, why = health.action(trip, run_dir)
        action = action if action == "rollback" else "stop"
        health.report(trip, action, why)
        if target is not None:
            raise RollBack(trip, target)
        where = f"step {step}" if since == step else f"steps {since}..{step}"
        return diverged(where, what, last_saved)

    with StopRequest() as stop, \
            tqdm(total=steps, initial=start, unit="step", desc="train", disable=not out.progress,
                 dynamic_ncols=True) as bar:
        for step in range(start + 1, steps + 1):
            loop.step(step)
            bar.update(1)
            logged = due(step, out.log_every, steps)
            saving = due(step, out.checkpoint_every, steps) or (stop.signum and saved_step != step)
            evaluating = keeper is not None and due(step, out.eval_every, steps)
            probing = health.probing(step)
            if loop.reads_every_step or logged or saving or evaluating:
                sums = loop.take_sums()
                bad = {key: value for key, value in sums.items() if not np.isfinite(value)}
                if bad:
                    raise non_finite(step, read_step + 1, bad, ", ".join(f"{k}={v}" for k, v in bad.items()))
                window.add(sums, steps=step - read_step, images=(step - read_step) * batch_size)
                read_step = step
            sampling = due(step, out.sample_every, steps)
            if sampling or saving or evaluating or probing:
                loop.sync()
                if models.g_ema is not None and (sampling or saving or evaluating):
                    calibrate_ema(models.g_ema, cfg, models.classes)
            scored, new_best = keeper(models, step=step) if evaluating else (None, None)
            record = {"step": step}
            if logged:
                means = window.means()
                bar.set_postfix_str(postfix(means, cfg) + (keeper.note if keeper else ""), refresh=False)
                record.update(means)
                window.reset()
            if scored:
                record["eval"] = scored
            if probing:
                record["probe"] = health.probe(models)
            if logged or evaluating or probing:
                with writing(log.metrics, last_saved):
                    log.record(record)
            # Reported before the step's checkpoint, which counts them: a resume from it keeps them.
            actions = [(trip, *health.action(trip, run_dir)) for trip in health.monitor.observe(record)]
            with writing(log.events_path, last_saved):
                for trip, action, _, why in actions:
                    health.report(trip, action, why)
            # The grid of a step is written before its checkpoint, so a resumed run never misses one.
            if sampling:
                grid_path = run_dir / "samples" / f"step_{step:06d}.png"
                with writing(grid_path, last_saved):
                    picture = sample_grid(models, sample_latents, cfg)
                    images.save_png(picture, grid_path)
                    log.grid(step, picture)
            if (saving or new_best) and not checkpoint.all_finite(models):
                raise non_finite(step, step, {"weights": "nan or inf"},
                                 "a weight or optimizer variable is NaN or infinite")
            if saving:
                last_saved, saved_step = save(step), step
            if new_best:
                with writing(run_dir / checkpoint.CHECKPOINTS / checkpoint.BEST, last_saved):
                    checkpoint.save(run_dir, step=step, models=models, cfg=cfg, draws=step_draws.state(step),
                                    sample_latents=sample_latents, name=checkpoint.BEST, score=new_best,
                                    events=len(log.events))
            if scored and keeper.stops(step, scored) and step < steps:  # the judge sees the last score too
                if saved_step != step:
                    last_saved, saved_step = save(step), step
                with writing(run_dir, last_saved):
                    log.finish()
                raise Pruned(f"pruned at step {step} of {steps}; checkpoint {last_saved}")
            for trip, action, target, _ in actions:
                if action == "rollback":
                    raise RollBack(trip, target)
                if action == "stop":
                    if saved_step != step:
                        last_saved, saved_step = save(step), step
                    with writing(run_dir, last_saved):
                        log.finish()
                    raise MonitorStopped(f"monitor: stopped at step {step} of {steps} by the {trip.rule} rule; "
                                         f"checkpoint {last_saved}. See {log.events_path}; resume with: dcgan "
                                         f"train --resume --run-dir {run_dir}")
            if stop.signum:
                with writing(run_dir, last_saved):
                    log.finish()
                name = signal.Signals(stop.signum).name
                raise Interrupted(f"stopped by {name} at step {step} of {steps}; checkpoint {last_saved}. "
                                  f"Resume with: dcgan train --resume --run-dir {run_dir}", stop.signum)
