"""One trial of a tuning study, as `dcgan tune-run DIR` runs it: each seed's run trained and scored by the
ablation worker (resuming where an interrupted attempt stopped), every training-time score reported to the trial
so its pruner can stop it, then result.json and the trial's outcome told to the storage.

Seed k's scores are reported at step k * train.steps + step, so a pruner compares a trial's seed k only with
the other trials' seed k. The trial directory holds everything the worker needs (trial.json names the storage),
so it runs wherever the directory is: this machine, or a Ray task elsewhere with a database storage.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from dcgan_cli.ablate import compare
from dcgan_cli.ablate import worker as run_worker
from dcgan_cli.evaluate.features import PRIMARY
from dcgan_cli.files import write_atomically
from dcgan_cli.tune import constraints as bounds
from dcgan_cli.tune.study import JOURNAL, RESULT, TRIAL, TRIAL_LOCK, TuneError, open_storage, pruner, trial_result


def run_trial(directory: str | Path) -> dict:
    """Run the trial in `directory` unless its result exists, and tell the study its outcome; return the result."""
    directory = Path(directory)
    if not (directory / TRIAL).is_file():
        raise TuneError(f"not a planned tuning trial (no {TRIAL}). Received: {str(directory)!r}")
    lock = FileLock(directory / TRIAL_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise run_worker.Busy(f"another process is running this trial already. Received: {str(directory)!r}") \
            from None
    try:
        spec = json.loads((directory / TRIAL).read_text(encoding="utf-8"))
        study, trial = _trial(spec, directory)
        result = trial_result(directory) or _run(directory, spec, trial)
        _tell(study, trial, result)
        return result
    finally:
        lock.release()


def _trial(spec: dict, directory: Path):
    """The study and the trial, from the journal of the study directory the trial is in (it may have moved since
    it was planned), else from the storage trial.json names (a database; a journal relative to the trial's
    directory, or absolute as trials planned before were written)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = spec["storage"]
    if storage.startswith("journal:"):
        beside = directory.resolve().parent.parent / JOURNAL
        storage = f"journal:{beside if beside.is_file() else (directory / storage.removeprefix('journal:')).resolve()}"
    study = optuna.load_study(study_name=spec["name"], storage=open_storage(storage),
                              pruner=pruner(spec["pruner"], steps=spec["steps"], seeds=len(spec["runs"]),
                                            eval_every=spec["eval_every"]))
    return study, optuna.trial.Trial(study, spec["trial_id"])


def _run(directory: Path, spec: dict, trial) -> dict:
    started = time.perf_counter()
    steps = spec["steps"]
    result = {"number": spec["number"], "values": spec["values"], "status": "complete", "runs": []}
    for k, run in enumerate(spec["runs"]):
        found = run_worker.run_one(directory / run, judge=_judge(trial, offset=k * steps))
        scores = found.get("scores") or {}
        result["runs"].append({"seed": k, "status": found["status"], "directory": run,
                               "objective": _objective(found, spec["objective"]),
                               "step": found.get("step"), "grid": found.get("grid"),
                               "scores": {name: scores[name] for name in bounds.SCORES if name in scores}})
        if found["status"] != "done":
            result["status"] = "pruned" if found["status"] == "pruned" else "failed"
            result["message"] = found.get("message", "")
            break
    if result["status"] == "complete":
        result["value"] = float(np.mean([run["objective"] for run in result["runs"]]))
        _check(result, tuple(bounds.parse(text) for text in spec.get("constraints", [])))
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_atomically(directory / RESULT, lambda file: file.write((json.dumps(result, indent=1) + "\n").encode()))
    return result


def _judge(trial, *, offset: int):
    """Report each training-time score to the trial (at offset + step) and stop the run when its pruner says."""
    def judge(step: int, value: float) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resumed run reports again the steps after its checkpoint
            trial.report(value, offset + step)
        return trial.should_prune()
    return judge


def _objective(found: dict, objective: str) -> float | None:
    """A scored run's objective: its final score, its best training-time (or checkpoint) score, or its tail."""
    if found["status"] != "done":
        return None
    if objective == "final":
        return float(found["scores"][PRIMARY[found["features"]]])
    values = [value for _, value in found["series"]]
    if objective == "best":
        return float(min(values))
    return float(np.mean(compare.tail(found["series"], steps=found["step"])))


def _check(result: dict, constraints: tuple) -> None:
    """A complete trial's constraints, each on its seeds' mean final score, into result["constraints"] (and
    result["feasible"]); a score the runs do not have (it depends on the features) fails the trial."""
    if not constraints:
        return
    try:
        result["constraints"] = bounds.check(constraints, [run["scores"] for run in result["runs"]])
    except KeyError as missing:
        result.update(status="failed", message=f"--constraint: the runs' final scores have no {missing.args[0]} "
                                               "in these features")
        del result["value"]
        return
    result["feasible"] = all(item["met"] for item in result["constraints"])


def _tell(study, trial, result: dict) -> None:
    """Tell the study the trial's outcome, with how far it breaks each constraint (once: a trial told already is
    left as it is)."""
    from optuna.trial import TrialState

    number = result["number"]
    if result["status"] == "complete":
        if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
            for item in result.get("constraints", []):
                trial.set_constraint(item["constraint"], item["violation"])
        study.tell(number, result["value"], skip_if_finished=True)
    else:
        state = TrialState.PRUNED if result["status"] == "pruned" else TrialState.FAIL
        study.tell(number, state=state, skip_if_finished=True)
