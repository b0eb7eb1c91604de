"""One run of a study, as `dcgan ablate-run DIR` runs it: train (resuming from the newest checkpoint), score the
final generator as `dcgan evaluate` does, flag a collapse, and write result.json last. The result keeps the run's
score over its last checkpoints too (compare.py): its training-time scores where they are in the study's feature
space, else its kept checkpoints scored alike.

A run directory is locked while a worker uses it, so two workers never train into the same one (a study started
again while an orphaned run still finishes, or a job array submitted twice).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from dcgan_cli.state import checkpoint
from dcgan_cli.data import sources
from dcgan_cli.training import train as training
from dcgan_cli.training import upkeep
from dcgan_cli.ablate import compare
from dcgan_cli.ablate.design import AblationError
from dcgan_cli.ablate.study import RESULT, SPEC
from dcgan_cli.config import Config, load_config
from dcgan_cli.evaluate import results, scoring
from dcgan_cli.evaluate.features import PRIMARY, dataset_key, real_order
from dcgan_cli.evaluate.stats import mean_pairwise_distance
from dcgan_cli.files import write_atomically
from dcgan_cli.nets.models import generate
from dcgan_cli.training.monitor import METRICS
from dcgan_cli.training.plots import read_metrics

DIVERSITY_IMAGES = 500  # generated and real images whose mean pairwise distance is compared
COLLAPSE_MODES = 0.5  # collapsed when at most this share of the classes (domain scores) or of the NDB bins is
#                       covered (or below monitor.collapse_diversity, the training monitor's bound on diversity)


class Busy(Exception):
    """Another process holds the run directory."""


def run_one(directory: str | Path, *, judge: upkeep.Judge | None = None) -> dict:
    """Train and score the run in `directory` (planned by study.prepare) unless its result exists; return it.
    `judge` (a tuning trial's pruner) sees each training-time score and may stop the run: its result says
    "pruned", and its checkpoints stay."""
    directory = Path(directory)
    if not (directory / SPEC).is_file():
        raise AblationError(f"not a planned ablation run (no {SPEC}). Received: {str(directory)!r}")
    lock = FileLock(directory / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise Busy(f"another process is running this run already. Received: {str(directory)!r}") from None
    try:
        return _run(directory, judge)
    finally:
        lock.release()


def _run(directory: Path, judge: upkeep.Judge | None) -> dict:
    found = directory / RESULT
    if found.is_file():
        return json.loads(found.read_text(encoding="utf-8"))
    spec = json.loads((directory / SPEC).read_text(encoding="utf-8"))
    cfg = load_config(directory / "config.yaml", saved=True)
    started = time.perf_counter()
    result = {key: spec[key] for key in ("variant", "seed", "train_seed", "changes")}
    done = checkpoint.complete(directory)
    try:
        if not done or checkpoint.read_state(done[-1])["step"] < cfg.train.steps:
            training.run(cfg, run_dir=directory, resume=True, judge=judge)
        result["status"] = "done"
    except upkeep.Diverged as error:
        result.update(status="diverged", message=str(error), collapsed=True)
    except upkeep.Pruned as error:
        result.update(status="pruned", message=str(error), step=checkpoint.read_state(
            checkpoint.complete(directory)[-1])["step"], grid=_final_grid(directory))
    result["train_seconds"] = round(time.perf_counter() - started, 1)
    result["losses"] = _final_losses(directory)
    if result["status"] == "done":
        final = checkpoint.complete(directory)[-1]
        evaluation = spec["evaluation"]
        scored = _score(final, evaluation)
        results.write_result(final / scoring.SCORES_FILE, scored)
        diversity = _diversity(final, cfg, seed=evaluation["seed"])
        step = checkpoint.read_state(final)["step"]
        result.update(step=step, features=scored["features"],
                      scores=scored["scores"], real_set=scored["real_set"], diversity=diversity,
                      series=_series(directory, cfg, evaluation, final=(step, scored)),
                      collapsed=collapsed(diversity, scored["scores"], floor=cfg.monitor.collapse_diversity),
                      grid=_final_grid(directory))
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_atomically(found, lambda file: file.write((json.dumps(result, indent=1) + "\n").encode()))
    return result


def _series(directory: Path, cfg: Config, evaluation: dict, *, final: tuple[int, dict]) -> list[list[float]]:
    """[step, primary score] over the run: its training-time scores when they are in the study's feature space
    and of the data it trained on, else each kept checkpoint scored as the final one was."""
    step, scored = final
    key = PRIMARY[scored["features"]]
    if cfg.output.eval_every and not evaluation.get("overrides"):
        found = compare.training_series(directory, features=scored["features"], key=key)
        if found:
            return found
    series = []
    for kept in checkpoint.complete(directory):
        kept_step = checkpoint.read_state(kept)["step"]
        if kept_step == step:
            series.append([step, scored["scores"][key]])
            continue
        series.append([kept_step, _score(kept, evaluation)["scores"][key]])
    return series


def _score(found: Path, evaluation: dict) -> dict:
    """A checkpoint scored as the study's evaluation says, as `dcgan evaluate` scores it."""
    _, scored = scoring.evaluate_checkpoint(
        found, count=evaluation["count"], features=evaluation["features"], seed=evaluation["seed"],
        overrides=evaluation.get("overrides", ()), progress=False)
    return scored


def collapsed(diversity: float, scores: dict, *, floor: float) -> bool:
    """Mode collapse: the images' diversity (a share of the real images') is below `floor`, or they cover at most
    half of the classes (domain scores) or of the NDB bins."""
    modes = scores.get("modes_covered")
    bins = scores.get("bins_covered")
    return bool(diversity < floor or (modes is not None and modes <= COLLAPSE_MODES * scores["classes"])
                or (modes is None and bins is not None and bins <= COLLAPSE_MODES * scores["bins"]))


def _final_losses(directory: Path) -> dict[str, float]:
    """The last logged losses and D outputs (means over the last log window)."""
    logs = [record for record in read_metrics(directory) if "d_loss_real" in record]
    return {key: logs[-1][key] for key in METRICS if key in logs[-1]} if logs else {}


def _diversity(found: Path, cfg: Config, *, seed: int) -> float:
    """The generated images' mean pairwise distance as a share of the real images' (DIVERSITY_IMAGES of each); a
    class-conditional G's (hack 21) images are of classes drawn as often as the data has them."""
    _, g = checkpoint.load_generator(found)
    dataset = sources.load_dataset(cfg, progress=False)
    rng = np.random.default_rng(seed)
    latents = np.concatenate(list(scoring.drawn_latents(cfg, DIVERSITY_IMAGES, rng)))
    classes = scoring.drawn_classes(checkpoint.saved_classes(found), DIVERSITY_IMAGES, rng)
    real = dataset.images[np.sort(real_order(len(dataset.images), dataset_key(dataset))[:DIVERSITY_IMAGES])]
    fakes = generate(g, latents, cfg, classes)
    return round(mean_pairwise_distance(fakes) / max(mean_pairwise_distance(real), 1e-12), 4)


def _final_grid(directory: Path) -> str | None:
    """The newest sample grid, relative to the run directory."""
    grids = sorted((directory / "samples").glob("step_*.png"))
    return grids[-1].relative_to(directory).as_posix() if grids else None
