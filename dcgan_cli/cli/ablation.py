"""`dcgan ablate` and `dcgan ablate-run`: which hacks matter."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dcgan_cli.cli.common import (SCREEN_DEFAULTS, RunFailed, UserError, executor_options, features_option,
                                  load, set_option, start_keras, study_worker, worker_threads)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The base config every variant changes (not needed with --report).")
@set_option
@click.option("--factors", default="all", show_default=True, metavar="all|new|NAME,NAME,...",
              help="What to vary: all (the eleven hacks and d_bn_in_g_update, D's BatchNorm statistics in the G "
                   "update: batch or moving), new (the stabilisers after them: ttur, ...), or names: the keys "
                   "under hacks: (batch_norm, adam, ttur, ...).")
@click.option("--design", type=click.Choice(["leave-one-out", "one-at-a-time", "together", "factorial"]),
              default="leave-one-out", show_default=True,
              help="leave-one-out: the base and each factor switched alone; one-at-a-time: all factors off, then "
                   "each on alone; together: the base against all the factors it turns on switched off at once "
                   "(does a preset beat the defaults?); factorial: every combination.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per variant, with train.seed = base seed + 0, 1, ...")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs at once [default: 1 with --executor local; as many as Ray's resources allow with ray].")
@executor_options("run")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The study's directory [default: runs/<config name>-<design>]. The same command continues it.")
@click.option("--n", "count", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Images of each run's final generator to score.")
@click.option("--score-set", "score_overrides", multiple=True, metavar="data.KEY=VALUE",
              help="Score the runs against other data than they trained on, e.g. --score-set data.limit=null: a "
                   "small training subset's runs against the whole folder. Repeatable.")
@features_option
@click.option("--plan", is_flag=True, help="Write the study's directory and print one shell command per run "
                                           "(Slurm job arrays, GNU parallel), each capped at cores / --jobs "
                                           "threads; run nothing.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the report of the study in this directory from the runs finished so far; run nothing.")
@click.option("--yes", is_flag=True, help="Run a factorial design of more than 6 factors.")
def ablate(config_path: Path | None, overrides: tuple[str, ...], factors: str, design: str, seeds: int,
           jobs: int | None, executor: str, address: str | None, cpus_per_run: int, gpus_per_run: float,
           run_dir: Path | None, count: int, score_overrides: tuple[str, ...], features: str | None,
           plan: bool, report_dir: Path | None, yes: bool) -> None:
    """Measure which hacks matter: train each variant of a base config with several seeds, score every run, and
    write a report (report.md, results.csv, report.png, samples.png). Interrupted, the same command continues.
    Runs compute in train.mixed_precision auto (bfloat16 where the device has it natively) unless the config or a
    --set names a precision."""
    from dcgan_cli.ablate import study as studies
    from dcgan_cli.ablate.design import AblationError, parse_factors, variants

    try:
        if report_dir is not None:
            _write_report(studies.load(report_dir))
            return
        if config_path is None:
            raise UserError("give --config PATH (the base config), or --report DIR to report on a study")
        threads = worker_threads(executor, jobs, cpus_per_run)
        base = load(config_path, overrides, defaults=SCREEN_DEFAULTS)
        chosen, everything = parse_factors(factors)
        made, reference, varied, notes = variants(base, chosen, design=design, everything=everything,
                                                  allow_large=yes)
        root = run_dir or Path("runs") / f"{config_path.stem}-{design}"
        start_keras()
        from dcgan_cli.ablate import runner

        evaluation = runner.evaluation_plan(base, count=count, features=features, overrides=score_overrides)
        planned = studies.extended(studies.Study(
            root=root, design=design, factors=tuple(f.name for f in varied), seeds=seeds, variants=tuple(made),
            reference=reference, base=base, evaluation=evaluation))
        pending = studies.prepare(planned)
    except AblationError as error:
        raise UserError(str(error)) from None
    for note in notes:
        click.echo(note, err=True)
    total = len(planned.runs())
    click.echo(f"study: {root} ({len(made)} variants x {planned.seeds} seeds; {total - len(pending)} of {total} runs "
               "finished already)", err=True)
    if plan:
        for command in studies.commands(pending, threads=threads):
            click.echo(command)
        click.echo(f"then: dcgan ablate --report {root}", err=True)
        return
    try:
        outcome = runner.run(planned, pending, executor=executor, jobs=jobs, threads=threads, address=address,
                             cpus=cpus_per_run, gpus=gpus_per_run)
    except AblationError as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        _write_report(planned)
        click.echo(f"interrupted: finished runs are kept; run the same command again to continue "
                   f"(or dcgan ablate --report {root})", err=True)
        sys.exit(130)
    click.echo(f"study wall time: {outcome.seconds:.0f} s for {len(pending)} runs", err=True)
    _write_report(planned)
    if outcome.busy:
        click.echo(f"{len(outcome.busy)} runs were being run by another process; run the same command again once "
                   "it has finished", err=True)
    if outcome.failed:
        raise RunFailed(f"{len(outcome.failed)} of {len(pending)} runs failed (logs: "
                        f"{', '.join(str(r.directory / studies.LOG) for r in outcome.failed[:3])}"
                        f"{', ...' if len(outcome.failed) > 3 else ''}); run the same command again to retry them")


def _write_report(planned) -> None:
    from dcgan_cli.ablate import report

    written = report.write(planned)
    click.echo("\n".join(report.table(written)))
    click.echo(f"report: {planned.root / 'report.md'} ({written.finished()} of {len(written.runs)} runs finished)",
               err=True)


@click.command("ablate-run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Cap the run's compute threads (parallel runs share the cores).")
def ablate_run(directory: Path, threads: int | None) -> None:
    """Train and score one run of a study planned by `dcgan ablate` (what --plan prints one of per run)."""
    with study_worker(threads):
        from dcgan_cli.ablate import worker

        result = worker.run_one(directory)
    scores = result.get("scores", {})
    click.echo(f"{result['variant']} seed {result['seed']}: {result['status']}"
               + (f", {result['features']} scores " + ", ".join(f"{k} {scores[k]:.4g}" for k in (
                   "frechet_distance", "kid", "ndb", "precision", "recall") if k in scores) if scores else "")
               + (", collapsed" if result.get("collapsed") else ""))
