"""Running a study: the checks and shared caches before any run starts, then the pending runs through an
executor under a progress bar over runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dcgan_cli.data import sources
from dcgan_cli.ablate import executors
from dcgan_cli.ablate.design import AblationError
from dcgan_cli.ablate.study import LOG, Run, Study, finished
from dcgan_cli.config import Config, ConfigError, with_overrides
from dcgan_cli.evaluate import scoring
from dcgan_cli.evaluate.features import PRIMARY, EvaluationError


def evaluation_plan(base: Config, *, count: int, features: str | None, overrides: tuple[str, ...] = ()) -> dict:
    """How every run is scored, checked before any run starts: the feature space suits the data (found from the
    file names where they tell, before anything is decoded), the data loads, and the space's reference (the domain
    classifier, the rotation network, or the real images' statistics in the standard FID network) is built and
    cached once for all. auto (--features, else the base's output.eval_features) is resolved here, so every run
    is scored alike. `overrides` (--score-set) change the data the runs are scored against, e.g. the whole folder
    a small training subset came from."""
    refused = [o for o in overrides if not o.strip().startswith(scoring.EVALUATE_KEYS)]
    if refused:
        raise AblationError(f"--score-set: only data.* can change for scoring (the generators are the runs'). "
                            f"Received: {', '.join(refused)}")
    try:
        trained = base
        base = with_overrides(base, overrides)
        key = "--features" if features else "output.eval_features"
        asked = features or base.output.eval_features
        scoring.preflight(base, asked, key=key)
        if trained.output.eval_every:
            scoring.preflight(trained, trained.output.eval_features, key="output.eval_features")
        dataset = sources.load_dataset(base, progress=base.output.progress)
        chosen = scoring.reference(dataset, asked, cfg=base, progress=base.output.progress, key=key).features
    except (sources.DataError, EvaluationError) as error:
        raise AblationError(str(error)) from None
    except ConfigError as error:
        raise AblationError("--score-set: " + "; ".join(error.problems)) from None
    return {"count": count, "features": chosen, "seed": 0, "overrides": list(overrides)}


@dataclass
class Outcome:
    seconds: float = 0.0
    failed: list[executors.Job] = field(default_factory=list)  # exited with an error, no result: retried next time
    busy: list[executors.Job] = field(default_factory=list)  # another process held the directory

    def sort(self, job: executors.Job, code: int, result: dict | None, *, bar: tqdm, name: str) -> bool:
        """File a worker that has ended: busy (another process held its directory), failed (an error and no
        result, said on the bar), or finished (True)."""
        if code == executors.BUSY:
            self.busy.append(job)
            return False
        if code != 0 or result is None:
            self.failed.append(job)
            bar.write(f"failed: {name} (exit code {code}); see {job.directory / LOG}")
            return False
        return True


def run(study: Study, pending: list[Run], *, executor: str, jobs: int | None, threads: int, address: str | None,
        cpus: int, gpus: float) -> Outcome:
    """Run the pending runs of a prepared study; KeyboardInterrupt once the running workers have stopped."""
    outcome = Outcome()
    started = time.perf_counter()
    with tqdm(total=len(pending), unit="run", desc="ablate", dynamic_ncols=True) as bar:
        def done(run: Run, code: int) -> None:
            result = finished(run)
            if outcome.sort(run, code, result, bar=bar, name=f"{run.variant} seed {run.seed}"):
                scores = result.get("scores", {})
                score = scores.get(PRIMARY.get(result.get("features"), "frechet_distance"))
                shown = f"{score:.3f}" if score is not None else result["status"]
                bar.set_postfix_str(f"{run.variant} seed {run.seed}: {shown}", refresh=False)
            bar.update(1)

        executors.run(pending, executor=executor, at_once=jobs, threads=threads, address=address, cpus=cpus,
                      gpus=gpus, finished=done)
    outcome.seconds = time.perf_counter() - started
    return outcome
