"""`dcgan tune` and `dcgan tune-run`: what values the hacks should take (Optuna)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from dcgan_cli.cli.common import (SCREEN_DEFAULTS, RunFailed, UserError, executor_options, features_option,
                                  load, set_option, start_keras, study_worker, worker_threads)

INSTALL = 'pip install "dcgan-cli[tune]"'


def _need_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise UserError(f"dcgan tune needs Optuna, which is not installed; {INSTALL}. Received: no optuna")


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The base config every trial changes (not needed with --report or --confirm).")
@set_option
@click.option("--space", "space_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The search space: a YAML file of config keys and distributions, e.g. "
                   "hacks.learning_rate: {log_uniform: [5.0e-5, 1.0e-3]}.")
@click.option("--start-from", "start_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A config file (a preset, another study's best.yaml) whose values of the searched keys are "
                   "tried right after the base, once. Repeatable.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials the study holds when it is done (all processes together; a rerun continues to it).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Ask no new trial after this many seconds (running ones finish).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials at once, each capped at cores / jobs threads.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds per trial, the objective averaged over them [default: 1]; with --confirm, fresh seeds "
                   "per config [default: 3].")
@click.option("--objective", type=click.Choice(["final", "best", "tail"]), default="final", show_default=True,
              help="final: the final generator's score (--n images); best: the best training-time score; tail: "
                   "the mean of the last few training-time (or checkpoint) scores.")
@click.option("--constraint", "constraint_texts", multiple=True, metavar="'SCORE >= X'",
              help="A bound on another final score, on the mean over a trial's seeds, e.g. \"recall >= 0.45\": "
                   "a trial that breaks it is reported as infeasible and is never the best; TPE steers away from "
                   "such trials. Repeatable.")
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default="median", show_default=True,
              help="Stop hopeless trials early on their training-time scores (needs output.eval_every).")
@click.option("--storage", metavar="URL",
              help="A database Optuna keeps the study in, shared by machines, e.g. "
                   "postgresql://user:password@host/dbname [default: a journal file in the study's directory].")
@click.option("--study-name", help="The study's name in its storage [default: the --run-dir's name].")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The study's directory [default: runs/<config name>-tune]. The same command continues it, here "
                   "or in another process.")
@click.option("--n", "count", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Images of each run's final generator to score.")
@features_option
@executor_options("trial", ray_note="; trials on other machines need --storage")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the report of the study in this directory from the trials finished so far; run nothing.")
@click.option("--confirm", "confirm_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Retrain the best trial's config and the base on fresh seeds (--seeds), and report the "
                   "difference with its interval; --set changes both, e.g. train.steps=3000 for trials tuned "
                   "shorter.")
def tune(config_path: Path | None, overrides: tuple[str, ...], space_path: Path | None,
         start_paths: tuple[Path, ...], trials: int,
         timeout: float | None, jobs: int, seeds: int | None, objective: str, constraint_texts: tuple[str, ...],
         sampler: str, pruner: str,
         storage: str | None, study_name: str | None, run_dir: Path | None, count: int, features: str | None,
         executor: str, address: str | None, cpus_per_run: int,
         gpus_per_run: float, report_dir: Path | None, confirm_dir: Path | None) -> None:
    """Search the values of a config's keys with Optuna: each trial an ordinary run scored as it trains, hopeless
    ones pruned, then a report (report.md, trials.csv, Optuna's plots, best.yaml, samples.png). Interrupted, the
    same command continues; several processes on one --run-dir (or one --storage) share the study. Trials compute
    in train.mixed_precision auto (bfloat16 where the device has it natively) unless the config or a --set names
    a precision; --confirm retrains in float32."""
    _need_optuna()
    from dcgan_cli.tune import study as tuning_module
    from dcgan_cli.tune.constraints import ConstraintError, parse
    from dcgan_cli.tune.space import SpaceError, load_space

    threads = worker_threads(executor, jobs, cpus_per_run)
    run = {"executor": executor, "jobs": jobs, "threads": threads, "address": address, "cpus": cpus_per_run,
           "gpus": gpus_per_run}
    try:
        if start_paths and (report_dir is not None or confirm_dir is not None):
            raise UserError(f"--start-from: starts a search; --report and --confirm search nothing. Received: "
                            f"{', '.join(map(str, start_paths))}")
        if constraint_texts and (report_dir is not None or confirm_dir is not None):
            raise UserError(f"--constraint: a study keeps the constraints it was started with; --report and "
                            f"--confirm read them from it. Received: {', '.join(constraint_texts)}")
        constraints = tuple(parse(text) for text in constraint_texts)
        if report_dir is not None:
            tuning = tuning_module.load(report_dir)
            _write_report(tuning, tuning_module.optuna_study(tuning))
            return
        if confirm_dir is not None:
            _confirm(tuning_module.load(confirm_dir), seeds=seeds or 3, overrides=overrides, run=run)
            return
        if config_path is None or space_path is None:
            raise UserError("give --config PATH and --space PATH, or --report DIR / --confirm DIR for a study")
        base = load(config_path, overrides, defaults=SCREEN_DEFAULTS)
        space = load_space(space_path)
        starts = {str(path): load(path, (), label=f"config in --start-from {path}") for path in start_paths}
        if pruner != "none" and not base.output.eval_every:
            raise UserError(f"--pruner {pruner}: pruning judges the training-time scores, and output.eval_every is "
                            "0; set it (e.g. --set output.eval_every=250) or use --pruner none. Received: 0")
        if storage is not None and "://" not in storage:
            raise UserError(f"--storage: expected a database URL such as sqlite:///tune.db or "
                            f"postgresql://user:password@host/dbname. Received: {storage!r}")
        root = run_dir or Path("runs") / f"{config_path.stem}-tune"
        start_keras()
        from dcgan_cli.ablate import runner as ablate_runner
        from dcgan_cli.ablate.design import AblationError

        try:
            evaluation = ablate_runner.evaluation_plan(base, count=count, features=features)
        except AblationError as error:
            raise UserError(str(error)) from None
        tuning = tuning_module.Tuning(root=root, base=base, space=space, seeds=seeds or 1, objective=objective,
                                      sampler=sampler, pruner=pruner, storage=storage,
                                      name=study_name or root.resolve().name, evaluation=evaluation,
                                      constraints=constraints)
        tuning_module.prepare(tuning)
        study = tuning_module.optuna_study(tuning)
        for note in tuning_module.start_from(study, tuning, starts):
            click.echo(note, err=True)
    except SpaceError as error:
        raise UserError("invalid search space:\n  " + "\n  ".join(error.problems)) from None
    except ConstraintError as error:
        raise UserError(str(error)) from None
    except tuning_module.TuneError as error:
        raise UserError(str(error)) from None
    held = len(study.get_trials(deepcopy=False))
    click.echo(f"study: {root} ({held} of {trials} trials there already; {tuning.storage or 'journal.log'})",
               err=True)
    from dcgan_cli.tune import runner

    try:
        outcome = runner.run(tuning, study, trials=trials, timeout=timeout, **run)
    except KeyboardInterrupt:
        _write_report(tuning, study)
        click.echo(f"interrupted: finished trials are kept and running ones resume from their checkpoints; run the "
                   f"same command again to continue (or dcgan tune --report {root})", err=True)
        sys.exit(130)
    click.echo(f"study wall time: {outcome.seconds:.0f} s for {outcome.ran} trials", err=True)
    for note in outcome.refused:
        click.echo(f"refused by the config: {note}", err=True)
    _write_report(tuning, study)
    if outcome.busy:
        click.echo(f"{len(outcome.busy)} trials were being run by another process", err=True)
    if outcome.failed:
        raise RunFailed(f"{len(outcome.failed)} trials failed (logs: "
                        f"{', '.join(str(job.directory / 'log.txt') for job in outcome.failed[:3])}); run the same "
                        "command again to resume them")


def _write_report(tuning, study) -> None:
    from dcgan_cli.tune import report

    _, summary = report.write(tuning, study)
    click.echo("\n".join(summary))
    click.echo(f"report: {tuning.root / 'report.md'}", err=True)


def _confirm(tuning, *, seeds: int, overrides: tuple[str, ...], run: dict) -> None:
    """The best trial's config and the base retrained on fresh seeds (with `overrides` on both), compared paired
    by seed."""
    from dcgan_cli.ablate import report as ablate_report
    from dcgan_cli.ablate import study as ablate_study
    from dcgan_cli.ablate.design import AblationError
    from dcgan_cli.tune import report
    from dcgan_cli.tune.study import confirmation_study, optuna_study

    study = optuna_study(tuning)
    top = report.best(report.collect(tuning, study))
    if top is None:
        raise UserError(f"--confirm: no trial of this study has completed yet. Received: {str(tuning.root)!r}")
    start_keras()
    from dcgan_cli.ablate import runner as ablate_runner

    confirm = confirmation_study(tuning, top.values, seeds=seeds, overrides=overrides)
    try:
        pending = ablate_study.prepare(confirm)
    except AblationError as error:
        raise UserError(f"--confirm: {confirm.root} holds the confirmation of another best trial (or other "
                        f"settings); move it away to confirm trial {top.number}. ({error})") from None
    total = len(confirm.runs())
    click.echo(f"confirming trial {top.number} against the base on train.seed {confirm.base.train.seed}.."
               f"{confirm.base.train.seed + confirm.seeds - 1} ({total - len(pending)} of {total} runs finished "
               "already)", err=True)
    try:
        outcome = ablate_runner.run(confirm, pending, jobs=run["jobs"], executor=run["executor"],
                                    threads=run["threads"], address=run["address"], cpus=run["cpus"],
                                    gpus=run["gpus"])
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to continue the confirmation", err=True)
        sys.exit(130)
    ablate_report.write(confirm)
    _write_report(tuning, study)
    if outcome.failed:
        raise RunFailed(f"{len(outcome.failed)} confirmation runs failed; run the same command again to retry them")


@click.command("tune-run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Cap the trial's compute threads (parallel trials share the cores).")
def tune_run(directory: Path, threads: int | None) -> None:
    """Train and score one trial of a study `dcgan tune` planned, and tell the study its outcome."""
    _need_optuna()
    from dcgan_cli.tune.study import TuneError

    with study_worker(threads, TuneError):
        from dcgan_cli.tune import worker

        result = worker.run_trial(directory)
    value = f", objective {result['value']:.4g}" if "value" in result else ""
    click.echo(f"trial {result['number']}: {result['status']}{value}")
