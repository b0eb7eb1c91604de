"""What a run does around its steps: its errors, the running means of the progress bar, the best-checkpoint
keeper with its scores, the sample grid, and turning a failed write or a NaN into an error that says what was kept."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli import images
from dcgan_cli.config import Config
from dcgan_cli.evaluate.features import EVAL_LOGGED, SCORE_NAMES, coverage
from dcgan_cli.evaluate.scoring import TrainingScorer
from dcgan_cli.files import to_stderr
from dcgan_cli.nets.models import Models, generate
from dcgan_cli.state import checkpoint
from dcgan_cli.training.monitor import METRICS


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


class Window:
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


def postfix(means: dict[str, float], cfg: Config) -> str:
    """The progress bar's detail: the losses, D's beliefs, G's gradient norm, with hack 23 its r_t and strength p."""
    adaptive = f"r_t {means['d_real_sign']:.2f} p {means['augment_p']:.2f} | " if cfg.hacks.adaptive_augment else ""
    return (f"D real {means['d_loss_real']:.3f} fake {means['d_loss_fake']:.3f} | G {means['g_loss']:.3f} "
            f"grad {means['g_grad_norm']:.3g} | D(x) {means['d_real_mean']:.2f} D(G(z)) {means['d_fake_mean']:.2f} | "
            f"{adaptive}{means['images_per_s']:.0f} img/s")


Judge = Callable[[int, float], bool]  # (step, the primary score then) -> stop the run now
SCORING_SHARE = 0.2  # warn when scoring at output.eval_every would take more than this share of a run's time


class BestKeeper:
    """output.eval_every: scores G at its cadence and knows the best score so far (its feature space's primary
    score), which checkpoints/best holds (read back from it when a run resumes). At its first score it warns
    when scoring would take more than SCORING_SHARE of the run (the standard FID network on a CPU)."""

    def __init__(self, scorer: TrainingScorer, run_dir: Path, *, resume: bool, judge: Judge | None = None,
                 start: int = 0, log: Callable[[str], None] = to_stderr):
        self.scorer = scorer
        self.judge = judge
        self.log = log
        self.clock: tuple[int, float] | None = (start, time.perf_counter())  # until the first score
        best = checkpoint.best_score(run_dir) if resume else None
        same_space = best is not None and best["result"]["features"] == scorer.reference.features
        self.best = best if same_space else None  # a best from another feature space is not comparable
        self.note = ""

    def __call__(self, models: Models, *, step: int) -> tuple[dict, dict | None]:
        """G's score now, as a metrics.jsonl entry, and the score record for checkpoints/best when it improved."""
        began = time.perf_counter()
        result = self.scorer(models.sampler, step=step)
        if self.clock is not None:
            self._warn_if_costly(step, seconds=time.perf_counter() - began, now=began)
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

    def _warn_if_costly(self, step: int, *, seconds: float, now: float) -> None:
        """Once: the share of the run's time that scoring at this cadence would take, from the steps so far and
        this score's time, and the output.eval_every that keeps it under SCORING_SHARE, when it is over."""
        (first, began), self.clock = self.clock, None
        cfg = self.scorer.cfg
        every, steps = cfg.output.eval_every, cfg.train.steps
        training = steps * (now - began) / max(step - first, 1)  # the run's steps at the pace so far
        scores = math.ceil(steps / every)
        share = scores * seconds / (scores * seconds + training)
        if share <= SCORING_SHARE:
            return
        allowed = math.floor(training * SCORING_SHARE / (1 - SCORING_SHARE) / seconds)
        advice = f"set output.eval_every to {math.ceil(steps / allowed)} or more" if allowed else \
            "set output.eval_every to 0"
        self.log(f"output.eval_every: one score in {self.scorer.reference.features} features takes {seconds:.1f} s, "
                 f"so scoring every {every} steps would take {share:.0%} of this run's time; {advice}, and score "
                 f"the final checkpoint with dcgan evaluate")

    def stops(self, step: int, record: dict) -> bool:
        """Whether the judge, given this score, stops the run."""
        return self.judge is not None and self.judge(step, record[self.scorer.reference.primary])


def sample_grid(models: Models, latents: np.ndarray, cfg: Config) -> np.ndarray:
    """The grid of the sampler's images of the fixed latents; with hack 21 one row per class (Classes.grid)."""
    if models.classes is None:
        return images.grid(generate(models.sampler, latents, cfg))
    z, classes, cols = models.classes.grid(latents)
    return images.grid(generate(models.sampler, z, cfg, classes), cols=cols)


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@contextmanager
def writing(path: Path, last: Path | None):
    """Turn an OSError while writing `path` into a WriteFailed that names it and the last good checkpoint."""
    try:
        yield
    except OSError as error:
        kept = f"the last complete checkpoint, {last}, is intact" if last else "no checkpoint had been written yet"
        raise WriteFailed(f"cannot write {path}: {error.strerror or error}; {kept}.") from None


def diverged(where: str, what: str, last: Path | None) -> Diverged:
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    return Diverged(f"training diverged at {where}: {what}; nothing from this step was saved and {kept}. "
                    "Try a lower hacks.learning_rate.")
