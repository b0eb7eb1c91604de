"""The training loop: per step, (1) update D on real and fake images, (2) update G through a frozen D.

Keras 3 does not freeze D at compile time, so `d.trainable` is set before every update: True for D's own updates,
False for the G update (D's weights and moving statistics stay put while its BatchNorm, by default, still
normalises with the batch's own statistics; see layers.BatchNorm).
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from tqdm import tqdm

from dcgan_cli import backend, images
from dcgan_cli.data import sources
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.nets import hacks
from dcgan_cli.training import tensorboard_log
from dcgan_cli import config as config_module
from dcgan_cli.backend import compile_function
from dcgan_cli.config import Config, ConfigError
from dcgan_cli.evaluate.features import SCORE_NAMES, coverage
from dcgan_cli.evaluate.scoring import TrainingScorer, preflight
from dcgan_cli.training.feed import Feed
from dcgan_cli.files import write_atomically
from dcgan_cli.training.health import Health, RollBack, roll_back
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.nets.models import (
    AdaptiveState,
    Classes,
    Models,
    ReplayBuffer,
    assign_ema,
    build_models,
    build_optimizers,
    calibrate_ema,
    ema_values,
    generate,
    g_inputs,
    gradient_norm,
)
from dcgan_cli.training.runlog import RunLog
from dcgan_cli.signals import StopRequest


class TrainingError(Exception):
    """A run that stopped before its last step; the message says why and what was kept."""


class Diverged(TrainingError):
    """A loss or weight became NaN or infinite."""


class WriteFailed(TrainingError):
    """A file of the run could not be written (disk full, no permission)."""


class MonitorStopped(TrainingError):
    """The monitor stopped the run (monitor.action: stop, or rollback with none left), after a checkpoint."""


class Pruned(TrainingError):
    """The run's judge (a tuning study's pruner) stopped it after a training-time score, with a checkpoint."""


class Interrupted(TrainingError):
    """SIGINT or SIGTERM stopped the run after a step, with a checkpoint written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def step_preparer(g: keras.Model, step_draws: draws.Draws, *, resident: bool,
                  replay: ReplayBuffer | None = None, adaptive: AdaptiveState | None = None) -> Callable:
    """The train_on_batch loop's inputs of a step as one compiled call on the device, (source, step) -> (D's
    batches, G's inputs): the real batch gathered and scaled, the latents and D's plan drawn, and G's fakes pooled
    with the real images into each D update's (x, targets) (Draws.d_batches; G's inputs: Draws.g_inputs; with
    hack 21 the classes of both go with them, and G's targets carry the fakes' classes). G runs
    in training mode (batch statistics, as in the DCGAN reference) and statelessly: its moving statistics move
    once per step, in the G update on the same z. With hack 22 D's fakes come partly from `replay`, which the call
    then updates; hacks 23 and 24 read the `adaptive` state (the augmentation's strength, LeCam's averages)."""
    def prepare(trainable, non_trainable, source, step, buffer, state):
        batches = ()
        for sub in range(step_draws.d_steps):  # hack 13: each D sub-step its own batch, latents and labels
            real = step_draws.real(source, step, resident=resident, sub=sub)
            z, plan = step_draws.latents_and_plan(step, sub)
            classes = step_draws.classes_of(source, step, resident=resident, sub=sub)  # hack 21: (real, fake)
            fake, _ = g.stateless_call(trainable, non_trainable, g_inputs(z, classes[1]), training=True)
            shown, shown_classes, buffer = step_draws.replay(fake, classes[1], buffer, step, sub)  # hack 22
            batches += step_draws.d_batches(real, shown, plan, step, sub, (classes[0], shown_classes), state)
        return (batches, step_draws.g_inputs(z, fake, step, classes[1], state), draws.g_targets(z, classes[1]),
                buffer)

    compiled = compile_function(prepare)

    def call(source, step: int) -> tuple:
        trainable = [v.value for v in g.trainable_variables]
        non_trainable = [v.value for v in g.non_trainable_variables]
        buffer = None if replay is None else replay.values()
        state = None if adaptive is None else adaptive.value()
        *inputs, buffer = compiled(trainable, non_trainable, backend.distribute_batch(source),
                                   backend.int32_argument(step), buffer, state)
        if replay is not None:
            replay.assign(buffer)
        return tuple(inputs)

    return call


def update_d(models: Models, batches: tuple, *, cfg: Config) -> dict[str, float]:
    """(1) Update D on each of the step's batches (x, targets) (Draws.d_batches): all-real then all-fake, or one
    mixed batch (hack 9), with labels smoothed (hack 10) and flipped (hack 11), for each of its D sub-steps (hack
    13). Returns D's loss, mean output and mean raw score per source and its mean sign on reals (the last
    sub-step's)."""
    models.d.trainable = True
    logs: dict[str, float] = {}
    for (x, targets), held in zip(batches, draws.d_sources(cfg) * hacks.d_steps(cfg.hacks), strict=True):
        out = models.d.train_on_batch(x, targets, return_dict=True)
        for source in held:
            names = (f"d_loss_{source}", f"d_{source}_mean", f"d_{source}_score")
            logs.update({name: out[name] for name in names + (("d_real_sign",) if source == "real" else ())})
    return logs


def update_g(models: Models, inputs, targets) -> tuple[float, float]:
    """(2) Update G on latents z (N, latent_dim), or [z, the fakes' classes (hack 21), hack 20's draws, the noise
    on D's input (hack 14)] (Draws.g_inputs), through a frozen D, toward D's "real" label (always 1, never
    smoothed; `targets`, draws.g_targets). Returns G's loss and its gradient's global norm
    (models.keeping_gradient_norm)."""
    models.d.trainable = False
    loss = models.gan.train_on_batch(inputs, targets, return_dict=True)["loss"]
    return loss, float(gradient_norm(models.gan.optimizer).numpy())


def train_step(models: Models, batches: tuple, g_inputs, g_targets, *, cfg: Config) -> dict[str, float]:
    """One step on its D batches and G's inputs and targets (step_preparer): (1) update D, (2) update G on the
    same z. The augmentation strength is hack 20's or 0; hack 23's comes from adapter()."""
    logs = update_d(models, batches, cfg=cfg)
    logs["g_loss"], logs["g_grad_norm"] = update_g(models, g_inputs, g_targets)
    logs["augment_p"] = 0.0 if cfg.hacks.adaptive_augment else hacks.augment_strength(None, hacks=cfg.hacks)
    return {key: float(logs[key]) for key in (*METRICS, "d_real_score", "d_fake_score")}


def adapter(models: Models, cfg: Config) -> Callable[[dict, int], float] | None:
    """Hacks 23 and 24 in the train_on_batch loop: after step `step`, the adaptive state moves with D's signs and
    scores on the step's batches (hacks.adapt) in one compiled call on the device; returns the new strength.
    None without either hack."""
    if models.adaptive is None:
        return None
    h, batch_size = cfg.hacks, cfg.train.batch_size
    compiled = compile_function(lambda state, sign, real, fake, step: hacks.adapt(
        state, sign, real, fake, step, hacks=h, batch_size=batch_size))

    def adapt(logs: dict, step: int) -> float:
        state = compiled(models.adaptive.value(), np.float32(logs["d_real_sign"]), np.float32(logs["d_real_score"]),
                         np.float32(logs["d_fake_score"]), backend.int32_argument(step))
        models.adaptive.assign(state)
        return float(hacks.augment_strength(keras.ops.convert_to_numpy(state), hacks=h))

    return adapt


def ema_updater(models: Models, *, decay: float) -> Callable[[int], None]:
    """The train_on_batch loop's moving average: after step `step`, g_ema's weights move toward G's
    (models.ema_values) in one compiled call; JAX computes the new values there and assigns them after."""
    if not backend.stateless_optimizers():
        compiled = compile_function(lambda step: assign_ema(models, decay=decay, step=step))
        return lambda step: compiled(backend.int32_argument(step))
    averages, values = models.g_ema.trainable_variables, models.g.trainable_variables
    blend = compile_function(lambda a, v, step: ema_values(a, v, decay=decay, step=step))

    def update(step: int) -> None:
        new = blend([a.value for a in averages], [v.value for v in values], backend.int32_argument(step))
        for average, value in zip(averages, new):
            average.assign(value)

    return update


class _SplitLoop:
    """train.loop: train_on_batch. Losses come back as Python numbers at every step anyway, so they are checked
    at every step. A step's inputs are made on the device by one compiled call (step_preparer), so what remains per
    step is the three Keras calls."""

    reads_every_step = True

    def __init__(self, models: Models, cfg: Config, images: np.ndarray, step_draws: draws.Draws,
                 labels: np.ndarray | None):
        # Built before the first update: TensorFlow would otherwise trace each update twice, once to create the
        # optimizers' slots and once more without (half a second each on a small model).
        build_optimizers(models)
        self.models, self.cfg = models, cfg
        self.feed = Feed(images, step_draws, cfg=cfg, labels=labels)
        self.prepare = step_preparer(models.g, step_draws, resident=self.feed.resident, replay=models.replay,
                                     adaptive=models.adaptive)
        self.adapt = adapter(models, cfg)
        self.update_ema = ema_updater(models, decay=cfg.train.ema_decay) if models.g_ema is not None else None
        self.sums = dict.fromkeys(METRICS, 0.0)

    def step(self, step: int) -> None:
        batches, g_inputs, g_targets = self.prepare(self.feed(step), step)
        logs = train_step(self.models, batches, g_inputs, g_targets, cfg=self.cfg)
        if self.adapt is not None:
            logs["augment_p"] = self.adapt(logs, step)
        if self.update_ema is not None:
            self.update_ema(step)
        for key in METRICS:
            self.sums[key] += logs[key]

    def take_sums(self) -> dict[str, float]:
        sums, self.sums = self.sums, dict.fromkeys(METRICS, 0.0)
        return sums

    def sync(self) -> None:
        """The Keras variables are always current in this loop."""

    def close(self) -> None:
        self.feed.close()


class _CompiledLoop:
    """train.loop: compiled. The state stays on the device; sums are read back only when needed. The step gathers
    its batch from the resident dataset (or takes the streamed one), scales it and draws its latents and labels
    itself, from the same generator as the train_on_batch loop."""

    reads_every_step = False

    def __init__(self, models: Models, cfg: Config, images: np.ndarray, step_draws: draws.Draws,
                 labels: np.ndarray | None):
        from dcgan_cli.training.compiled import CompiledStep

        self.feed = Feed(images, step_draws, cfg=cfg, labels=labels)
        self.compiled = CompiledStep(models, cfg, step_draws, resident=self.feed.resident,
                                     jit_compile=backend.use_xla(cfg.train.jit_compile))

    def step(self, step: int) -> None:
        self.compiled(self.feed(step), step)

    def take_sums(self) -> dict[str, float]:
        return self.compiled.take_metric_sums()

    def sync(self) -> None:
        self.compiled.write_back()

    def close(self) -> None:
        self.feed.close()


class _Window:
    """Running means of the metrics and the image rate since the last logged step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(METRICS, 0.0)
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, sums: dict[str, float], *, steps: int, images: int) -> None:
        for key in METRICS:
            self.sums[key] += sums[key]
        self.steps += steps
        self.images += images

    def means(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        means = {key: total / max(self.steps, 1) for key, total in self.sums.items()}
        return {**means, "images_per_s": self.images / seconds}


def _postfix(means: dict[str, float], cfg: Config) -> str:
    """The progress bar's detail: the losses, D's beliefs, G's gradient norm, with hack 23 its r_t and strength p."""
    adaptive = f"r_t {means['d_real_sign']:.2f} p {means['augment_p']:.2f} | " if cfg.hacks.adaptive_augment else ""
    return (f"D real {means['d_loss_real']:.3f} fake {means['d_loss_fake']:.3f} | G {means['g_loss']:.3f} "
            f"grad {means['g_grad_norm']:.3g} | D(x) {means['d_real_mean']:.2f} D(G(z)) {means['d_fake_mean']:.2f} | "
            f"{adaptive}{means['images_per_s']:.0f} img/s")


EVAL_LOGGED = ("frechet_distance", "fid", "kid", "modes_covered", "classes", "class_kl", "mean_confidence", "ndb",
               "bins", "ndb_k", "bins_covered", "precision", "recall")  # what metrics.jsonl keeps of a score


Judge = Callable[[int, float], bool]  # (step, the primary score then) -> stop the run now


class _BestKeeper:
    """output.eval_every: scores G at its cadence and knows the best score so far (its feature space's primary
    score), which checkpoints/best holds (read back from it when a run resumes)."""

    def __init__(self, scorer: TrainingScorer, run_dir: Path, *, resume: bool, judge: Judge | None = None):
        self.scorer = scorer
        self.judge = judge
        best = checkpoint.best_score(run_dir) if resume else None
        same_space = best is not None and best["result"]["features"] == scorer.reference.features
        self.best = best if same_space else None  # a best from another feature space is not comparable
        self.note = ""

    def __call__(self, models: Models, *, step: int) -> tuple[dict, dict | None]:
        """G's score now, as a metrics.jsonl entry, and the score record for checkpoints/best when it improved."""
        result = self.scorer(models.sampler, step=step)
        key = self.scorer.reference.primary
        scores = result["scores"]
        value = scores[key]
        improved = self.best is None or value < self.best["value"]
        record = {"features": result["features"], "images": result["images"], "real_set": result["real_set"],
                  **{name: scores[name] for name in EVAL_LOGGED if name in scores}, "best": improved}
        new_best = {"key": key, "value": value, "step": step, "result": result} if improved else None
        self.best = new_best or self.best
        covered = coverage(scores)
        self.note = (f" | {SCORE_NAMES[key][1]} {value:.4g}{f', {covered}' if covered else ''} "
                     f"(best {self.best['value']:.4g} @ {self.best['step']})")
        return record, new_best

    def stops(self, step: int, record: dict) -> bool:
        """Whether the judge, given this score, stops the run."""
        return self.judge is not None and self.judge(step, record[self.scorer.reference.primary])


def sample_grid(models: Models, latents: np.ndarray, cfg: Config) -> np.ndarray:
    """The grid of the sampler's images of the fixed latents; with hack 21 one row per class (Classes.grid)."""
    if models.classes is None:
        return images.grid(generate(models.sampler, latents, cfg))
    z, classes, cols = models.classes.grid(latents)
    return images.grid(generate(models.sampler, z, cfg, classes), cols=cols)


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@contextmanager
def _writing(path: Path, last: Path | None):
    """Turn an OSError while writing `path` into a WriteFailed that names it and the last good checkpoint."""
    try:
        yield
    except OSError as error:
        kept = f"the last complete checkpoint, {last}, is intact" if last else "no checkpoint had been written yet"
        raise WriteFailed(f"cannot write {path}: {error.strerror or error}; {kept}.") from None


def _diverged(where: str, what: str, last: Path | None) -> Diverged:
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    return Diverged(f"training diverged at {where}: {what}; nothing from this step was saved and {kept}. "
                    "Try a lower hacks.learning_rate.")


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
    with _writing(run_dir, resumed_from):
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / "config.yaml", lambda file: file.write(config_module.to_yaml(cfg).encode()))
        log = RunLog(run_dir, cfg, start=start, events=events)
    keeper = _BestKeeper(scorer, run_dir, resume=resume, judge=judge) if scorer is not None else None
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
          keeper: _BestKeeper | None, log: RunLog, health: Health) -> None:
    """Steps start+1 .. train.steps, with logging, sample grids, scores and the best checkpoint, checkpoints, the
    monitor and its rollbacks, and clean stops; the loop's prefetching thread, if any, is stopped however they
    end."""
    while True:
        loop = (_CompiledLoop if cfg.train.loop == "compiled" else _SplitLoop)(models, cfg, real_images, step_draws,
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
        with _writing(run_dir, rollback.target):
            start, step_draws, resumed_from = roll_back(cfg, models, rollback, health, run_dir=run_dir,
                                                         count=len(real_images))


def _steps(cfg: Config, models: Models, loop: _SplitLoop | _CompiledLoop, step_draws: draws.Draws,
           sample_latents: np.ndarray, *, run_dir: Path, start: int, resumed_from: Path | None,
           keeper: _BestKeeper | None, log: RunLog, health: Health) -> None:
    """The steps of _loop, run by `loop`."""
    steps, out, batch_size = cfg.train.steps, cfg.output, cfg.train.batch_size
    last_saved, saved_step, read_step = resumed_from, start, start
    window = _Window()

    def save(step: int) -> Path:
        with _writing(run_dir / checkpoint.CHECKPOINTS / f"step_{step:06d}", last_saved):
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
        return _diverged(where, what, last_saved)

    with StopRequest() as stop, \
            tqdm(total=steps, initial=start, unit="step", desc="train", disable=not out.progress,
                 dynamic_ncols=True) as bar:
        for step in range(start + 1, steps + 1):
            loop.step(step)
            bar.update(1)
            logged = _due(step, out.log_every, steps)
            saving = _due(step, out.checkpoint_every, steps) or (stop.signum and saved_step != step)
            evaluating = keeper is not None and _due(step, out.eval_every, steps)
            probing = health.probing(step)
            if loop.reads_every_step or logged or saving or evaluating:
                sums = loop.take_sums()
                bad = {key: value for key, value in sums.items() if not np.isfinite(value)}
                if bad:
                    raise non_finite(step, read_step + 1, bad, ", ".join(f"{k}={v}" for k, v in bad.items()))
                window.add(sums, steps=step - read_step, images=(step - read_step) * batch_size)
                read_step = step
            sampling = _due(step, out.sample_every, steps)
            if sampling or saving or evaluating or probing:
                loop.sync()
                if models.g_ema is not None and (sampling or saving or evaluating):
                    calibrate_ema(models.g_ema, cfg, models.classes)
            scored, new_best = keeper(models, step=step) if evaluating else (None, None)
            record = {"step": step}
            if logged:
                means = window.means()
                bar.set_postfix_str(_postfix(means, cfg) + (keeper.note if keeper else ""), refresh=False)
                record.update(means)
                window.reset()
            if scored:
                record["eval"] = scored
            if probing:
                record["probe"] = health.probe(models)
            if logged or evaluating or probing:
                with _writing(log.metrics, last_saved):
                    log.record(record)
            # Reported before the step's checkpoint, which counts them: a resume from it keeps them.
            actions = [(trip, *health.action(trip, run_dir)) for trip in health.monitor.observe(record)]
            with _writing(log.events_path, last_saved):
                for trip, action, _, why in actions:
                    health.report(trip, action, why)
            # The grid of a step is written before its checkpoint, so a resumed run never misses one.
            if sampling:
                grid_path = run_dir / "samples" / f"step_{step:06d}.png"
                with _writing(grid_path, last_saved):
                    picture = sample_grid(models, sample_latents, cfg)
                    images.save_png(picture, grid_path)
                    log.grid(step, picture)
            if (saving or new_best) and not checkpoint.all_finite(models):
                raise non_finite(step, step, {"weights": "nan or inf"},
                                 "a weight or optimizer variable is NaN or infinite")
            if saving:
                last_saved, saved_step = save(step), step
            if new_best:
                with _writing(run_dir / checkpoint.CHECKPOINTS / checkpoint.BEST, last_saved):
                    checkpoint.save(run_dir, step=step, models=models, cfg=cfg, draws=step_draws.state(step),
                                    sample_latents=sample_latents, name=checkpoint.BEST, score=new_best,
                                    events=len(log.events))
            if scored and keeper.stops(step, scored) and step < steps:  # the judge sees the last score too
                if saved_step != step:
                    last_saved, saved_step = save(step), step
                with _writing(run_dir, last_saved):
                    log.finish()
                raise Pruned(f"pruned at step {step} of {steps}; checkpoint {last_saved}")
            for trip, action, target, _ in actions:
                if action == "rollback":
                    raise RollBack(trip, target)
                if action == "stop":
                    if saved_step != step:
                        last_saved, saved_step = save(step), step
                    with _writing(run_dir, last_saved):
                        log.finish()
                    raise MonitorStopped(f"monitor: stopped at step {step} of {steps} by the {trip.rule} rule; "
                                         f"checkpoint {last_saved}. See {log.events_path}; resume with: dcgan "
                                         f"train --resume --run-dir {run_dir}")
            if stop.signum:
                with _writing(run_dir, last_saved):
                    log.finish()
                name = signal.Signals(stop.signum).name
                raise Interrupted(f"stopped by {name} at step {step} of {steps}; checkpoint {last_saved}. "
                                  f"Resume with: dcgan train --resume --run-dir {run_dir}", stop.signum)
