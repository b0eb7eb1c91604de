"""A training run: `run` loads the data, builds G and D and trains them into the run directory, from scratch or
from a checkpoint, and rebuilds the loop after a rollback; its loop of steps is training/duties.py, one step
training/steps.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from dcgan_cli import backend
from dcgan_cli import config as config_module
from dcgan_cli.config import Config, ConfigError
from dcgan_cli.data import sources
from dcgan_cli.evaluate.scoring import TrainingScorer, preflight
from dcgan_cli.files import write_atomically
from dcgan_cli.nets import hacks
from dcgan_cli.nets.models import Classes, Models, build_models
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.training import tensorboard_log
from dcgan_cli.training.health import Health, RollBack, roll_back
from dcgan_cli.training.loops import CompiledLoop, SplitLoop
from dcgan_cli.training.runlog import RunLog
from dcgan_cli.training.duties import Steps
from dcgan_cli.training.upkeep import BestKeeper, Judge, writing


def run(cfg: Config, *, run_dir: str | Path, resume: bool = False, judge: Judge | None = None) -> Path:
    """Train into `run_dir` (config.yaml, samples/, checkpoints/, metrics.jsonl), from scratch or, with `resume`,
    from its newest complete checkpoint (if any), continuing bit for bit where the interrupted run left off.
    `judge` sees each output.eval_every score and may stop the run early (Pruned)."""
    run_dir = Path(run_dir)
    cfg = config_module.replace_value(cfg, "output.run_dir", str(run_dir))
    # auto becomes the precision this device runs, written so into config.yaml: a resumed run keeps it.
    cfg = config_module.replace_value(cfg, "train.mixed_precision", backend.resolve_precision(cfg.train.mixed_precision))
    warning = backend.emulated_bfloat16(cfg.train.mixed_precision)
    if warning:
        print(warning, file=sys.stderr)
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
    keeper = BestKeeper(scorer, run_dir, resume=resume, judge=judge, start=start) if scorer is not None else None
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
            Steps(cfg, models, loop, step_draws, sample_latents, run_dir=run_dir, start=start,
                  resumed_from=resumed_from, keeper=keeper, log=log, health=health).run()
            log.finish()
            return
        except RollBack as request:
            rollback = request
        finally:
            loop.close()
        with writing(run_dir, rollback.target):
            start, step_draws, resumed_from = roll_back(cfg, models, rollback, health, run_dir=run_dir,
                                                         count=len(real_images))

