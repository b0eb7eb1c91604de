"""Running a tuning study from this process: first the trials an interrupted process left running, then new ones
asked from the sampler one at a time as places free up, each a `dcgan tune-run` worker through the ablation's
executors, until the study holds --trials trials or --timeout has passed."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from tqdm import tqdm

from dcgan_cli.ablate import executors
from dcgan_cli.ablate import runner as runs
from dcgan_cli.config import ConfigError
from dcgan_cli.tune.study import PLANNER_LOCK, TRIAL, TRIAL_LOCK, Tuning, plan_trial, trial_result

WORKER = "tune-run"


@dataclass(frozen=True)
class TrialJob:
    """A trial for an executor: its number, its directory, and this process's hold on it (claim)."""

    number: int
    directory: Path
    held: FileLock = field(compare=False, repr=False)


def claim(directory: Path) -> FileLock | None:
    """Hold trial `directory` for this process until its job is done (its lock file, taken before trial.json is
    written), so that a process joining the study never takes a trial whose worker has not started yet for an
    orphan; None when another live process holds it. The system drops the hold of a process that dies."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / PLANNER_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


@dataclass
class Outcome(runs.Outcome):
    """An ablation's outcome (failed trials are resumed next time), with the trials run and refused."""

    ran: int = 0
    refused: list[str] = field(default_factory=list)  # drawn combinations the config refuses


def orphans(tuning: Tuning, study) -> list[TrialJob]:
    """Trials the storage says are running whose directory is here and which no process holds: left by an
    interrupted or failed attempt, resumed from their checkpoints."""
    from optuna.trial import TrialState

    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        directory = tuning.trial_directory(trial.number)
        if not (directory / TRIAL).is_file():
            continue
        held = claim(directory)
        if held is None:
            continue
        lock = FileLock(directory / TRIAL_LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            held.release()
            continue
        lock.release()
        found.append(TrialJob(trial.number, directory, held))
    return found


def asked(tuning: Tuning, study, *, trials: int, deadline: float | None, outcome: Outcome) -> Iterator[TrialJob]:
    """New trials, each asked from the sampler when an executor has a place for it; a drawn combination that
    the config refuses is told as failed (with why) and another is drawn."""
    from optuna.trial import TrialState

    distributions = tuning.space.distributions()
    while (deadline is None or time.monotonic() < deadline) and (
            _waiting(study) or len(study.get_trials(deepcopy=False)) < trials):
        trial = study.ask(distributions)
        directory = tuning.trial_directory(trial.number)
        held = claim(directory)  # a new trial's directory: no one else holds it
        try:
            plan_trial(tuning, trial)
        except ConfigError as error:
            held.release()
            (directory / PLANNER_LOCK).unlink()
            directory.rmdir()
            why = "; ".join(error.problems)
            trial.set_user_attr("refused", why)
            study.tell(trial, state=TrialState.FAIL)
            outcome.refused.append(f"trial {trial.number}: {why}")
            continue
        yield TrialJob(trial.number, directory, held)


def run(tuning: Tuning, study, *, trials: int, timeout: float | None, executor: str, jobs: int, threads: int,
        address: str | None, cpus: int, gpus: float) -> Outcome:
    """Resume this study's orphaned trials, then run new ones; KeyboardInterrupt once the workers have stopped."""
    outcome = Outcome()
    started = time.perf_counter()
    resumed = orphans(tuning, study)
    deadline = time.monotonic() + timeout if timeout else None
    planned = max(trials - len(study.get_trials(deepcopy=False)), 0) + _waiting(study) + len(resumed)
    with tqdm(total=planned, unit="trial", desc="tune", dynamic_ncols=True) as bar:
        def done(job: TrialJob, code: int) -> None:
            job.held.release()
            result = trial_result(job.directory)
            if outcome.sort(job, code, result, bar=bar, name=f"trial {job.number}"):
                outcome.ran += 1
                shown = f"{result['value']:.3f}" if "value" in result else result["status"]
                best = _best_value(study)
                bar.set_postfix_str(f"trial {job.number}: {shown}" + (f", best {best:.3f}" if best else ""),
                                    refresh=False)
            bar.update(1)

        jobs_iter = itertools.chain(resumed, asked(tuning, study, trials=trials, deadline=deadline, outcome=outcome))
        executors.run(jobs_iter, executor=executor, at_once=jobs, threads=threads, address=address, cpus=cpus,
                      gpus=gpus, finished=done, command=WORKER)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _waiting(study) -> int:
    """Enqueued trials not yet asked for (trial 0, the base, in a new study): they run whatever --trials says."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _best_value(study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no trial has completed yet
        return None
