"""`dcgan train` and `dcgan report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dcgan_cli.cli.common import UserError, load, set_option, start_keras, training_outcomes, writing


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file (see configs/default.yaml for every key). With --resume, optional.")
@set_option
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the run's files go (default: output.run_dir, else runs/<config name>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in the run directory from its newest complete checkpoint.")
def train(config_path: Path | None, overrides: tuple[str, ...], run_dir: Path | None, resume: bool) -> None:
    """Train G and D from a config; write samples, checkpoints and metrics into one run directory.

    Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and exits; --resume continues exactly. The
    monitor's rules (the monitor section) warn, stop with exit code 3, or roll back to a healthy checkpoint.
    """
    if config_path is None and not (resume and run_dir is not None):
        raise UserError("give --config PATH, or --resume --run-dir DIR to continue a run with its saved config")
    cfg = load(config_path, overrides) if config_path is not None else None
    start_keras()
    from dcgan_cli.state import checkpoint
    from dcgan_cli.training import rundir
    from dcgan_cli.training import train as training
    from dcgan_cli.data.common import DataError
    from dcgan_cli.evaluate.features import EvaluationError

    try:
        with training_outcomes(rundir.RunDirError, checkpoint.CheckpointError, DataError, EvaluationError):
            if resume:
                run_dir, cfg, notes = rundir.for_resume(cfg, overrides, explicit=run_dir,
                                                        config_name=config_path.stem if config_path else None)
                for note in notes:
                    click.echo(note, err=True)
            else:
                run_dir = rundir.choose_new(cfg, config_name=config_path.stem, explicit=run_dir)
            click.echo(f"run directory: {run_dir}", err=True)
            training.run(cfg, run_dir=run_dir, resume=resume)
    except KeyboardInterrupt:
        click.echo("interrupted before the first step; nothing was written to resume from", err=True)
        sys.exit(130)
    click.echo(f"done: samples in {run_dir / 'samples'}, checkpoints in {run_dir / 'checkpoints'}", err=True)


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Draw a run's losses.png and progress.gif again from its logs and print a one-screen summary: steps, wall
    time, images/s, final losses, best score and its step, monitor events."""
    from dcgan_cli.training import report as reports

    try:
        cfg = reports.load_run(run_dir)
    except reports.ReportError as error:
        raise UserError(str(error)) from None
    with writing(run_dir):
        written = reports.redraw(run_dir, cfg)
    click.echo("\n".join(reports.summary(run_dir, cfg)))
    if written:
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
