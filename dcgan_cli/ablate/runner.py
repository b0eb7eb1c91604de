"""Running a study: the checks and shared caches before any run starts, then the pending runs through an
executor under a progress bar over runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dcgan_cli import data
from dcgan_cli.ablate import executors
from dcgan_cli.ablate.design import AblationError
from dcgan_cli.ablate.study import LOG, Run, Study, finished
from dcgan_cli.config import Config
from dcgan_cli.evaluate import inception, scoring
from dcgan_cli.evaluate.features import EvaluationError


def evaluation_plan(base: Config, *, count: int, features: str | None, inception_weights: Path | None) -> dict:
    """How every run is scored, checked before any run starts: the data loads, the feature space suits it, and its
    reference (the domain classifier, or the real images' Inception features) is built and cached once for all."""
    try:
        dataset = data.load_dataset(base, progress=base.output.progress)
        chosen = features or scoring.default_features(dataset)
        weights = inception.weights_file(inception_weights) if chosen == "inception" else None
        if base.output.eval_every and dataset.labels is None:
            raise AblationError(f"output.eval_every: the domain score during training needs class labels, and "
                                f"{dataset.source} has none; set it to 0. Received: {base.output.eval_every}")
        scoring.reference(dataset, chosen, cfg=base, inception_weights=weights, progress=base.output.progress)
    except (data.DataError, EvaluationError) as error:
        raise AblationError(str(error)) from None
    return {"count": count, "features": chosen, "seed": 0,
            "inception_weights": str(weights) if weights is not None else None}


@dataclass
class Outcome:
    seconds: float = 0.0
    failed: list[Run] = field(default_factory=list)  # exited with an error, no result: retried next time
    busy: list[Run] = field(default_factory=list)  # another process held the run directory


def run(study: Study, pending: list[Run], *, executor: str, jobs: int | None, threads: int, address: str | None,
        cpus: int, gpus: float) -> Outcome:
    """Run the pending runs of a prepared study; KeyboardInterrupt once the running workers have stopped."""
    outcome = Outcome()
    started = time.perf_counter()
    with tqdm(total=len(pending), unit="run", desc="ablate", dynamic_ncols=True) as bar:
        def done(run: Run, code: int) -> None:
            result = finished(run)
            if code == executors.BUSY:
                outcome.busy.append(run)
            elif code != 0 or result is None:
                outcome.failed.append(run)
                bar.write(f"failed: {run.variant} seed {run.seed} (exit code {code}); see {run.directory / LOG}")
            else:
                scores = result.get("scores", {})
                score = scores.get("frechet_distance", scores.get("kid"))
                shown = f"{score:.3f}" if score is not None else result["status"]
                bar.set_postfix_str(f"{run.variant} seed {run.seed}: {shown}", refresh=False)
            bar.update(1)

        if executor == "ray":
            executors.run_ray(pending, address=address, cpus=cpus, gpus=gpus, threads=threads, jobs=jobs,
                              finished=done)
        else:
            executors.run_local(pending, jobs=jobs or 1, threads=threads, finished=done)
    outcome.seconds = time.perf_counter() - started
    return outcome
