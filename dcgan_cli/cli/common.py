"""What the commands share: the user-error exceptions and exit codes, config loading, Keras start-up, options."""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from dcgan_cli.config import FEATURE_SPACES, RETIRED_SPACES, Config, ConfigError, load_config

STOPPED_BY_MONITOR = 3  # exit code of a run the monitor stopped (monitor.action: stop)


class UserError(click.ClickException):
    """A mistake in the user's input: printed as one clean message, exit code 2, no traceback."""

    exit_code = 2


# A screen (dcgan ablate, dcgan tune's trials) computes in the device's fastest precision unless the config or a
# --set names one; confirmations and the shipped presets train in float32.
SCREEN_DEFAULTS = ("train.mixed_precision=auto",)


def load(config_path: Path | None, overrides: tuple[str, ...], *, label: str = "config",
         defaults: tuple[str, ...] = ()) -> Config:
    """The config a command was given (`defaults`: the command's own, under the file's and the overrides'); its
    mistakes exit 2, each on a line under 'invalid <label>:'."""
    try:
        return load_config(config_path, overrides, defaults=defaults)
    except ConfigError as error:
        raise UserError(f"invalid {label}:\n  " + "\n  ".join(error.problems)) from None


@contextmanager
def writing(path: Path):
    """An output file the user named that cannot be written: one line, exit code 2."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}. Received: {str(path)!r}") from None


def generator(checkpoint_path: Path, *, raw: bool):
    """The checkpoint a path names, its config and its G (the moving average where kept, unless `raw`)."""
    from dcgan_cli.state import checkpoint

    try:
        found = checkpoint.resolve(checkpoint_path)
        return (found, *checkpoint.load_generator(found, raw=raw))
    except (checkpoint.CheckpointError, ConfigError) as error:
        raise UserError(str(error)) from None


def start_keras() -> None:
    """Import Keras and run one op with the C++ start-up chatter on stderr (absl, oneDNN, CUDA probes) hidden;
    Python errors still surface, since only the process's raw stderr is silenced and only meanwhile. TensorFlow
    is imported here too where installed, whatever the backend: keras.utils.set_random_seed imports it later to
    seed it, and its import prints the same chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras

            if importlib.util.find_spec("tensorflow") is not None:
                import tensorflow  # noqa: F401

            from dcgan_cli.backend import split_cpu

            split_cpu(int(os.environ.get("DCGAN_CPU_DEVICES", "1")))  # testing data parallelism on a CPU
            keras.ops.convert_to_numpy(keras.ops.zeros(1))
    finally:
        os.dup2(saved, 2)
        os.close(saved)


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                             required=True, help="YAML config file (see configs/default.yaml for every key).")
set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override one config value, parsed as YAML, e.g. --set hacks.batch_norm=false. "
                               "Repeatable.")

def _retired_space(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """--features inception, which an earlier version took: one line on what replaced it."""
    if value in RETIRED_SPACES:
        raise click.BadParameter(f"no longer a choice: {RETIRED_SPACES[value]}. Received: {value}")
    return value


features_option = click.option("--features", type=click.Choice(["auto", *FEATURE_SPACES, *RETIRED_SPACES]),
                               default=None, callback=_retired_space,
                               help="Feature space of the scores: domain (a classifier of the data's class labels), "
                                    "rotation (a network trained without labels to tell how images were turned), "
                                    "fid (FID and KID in the standard network of published FIDs; pip install "
                                    "\"dcgan-cli[fid]\") or auto (domain where the data has class labels, else "
                                    "rotation) [default: the config's output.eval_features, auto].")

def executor_options(unit: str, *, ray_note: str = ""):
    """Where a study's runs go: --executor, --address, --cpus-per-run, --gpus-per-run; `unit` names one of them
    ("run", "trial") in the help."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help=f'local: processes on this machine; ray: Ray tasks (pip install "dcgan-cli[ray]"'
                          f'{ray_note}).'),
        click.option("--address", help="Ray: the address of an existing cluster [default: a local Ray instance on "
                                       "127.0.0.1, started and stopped by this command]."),
        click.option("--cpus-per-run", type=click.IntRange(min=1), default=1, show_default=True,
                     help=f"Ray: CPUs each {unit} asks for (and its compute threads)."),
        click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help=f"Ray: GPUs each {unit} asks for (fractions share one)."),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def worker_threads(executor: str, jobs: int | None, cpus_per_run: int) -> int:
    """Each run's compute threads: its Ray CPUs, or this machine's cores shared by --jobs; a UserError where
    --executor ray is asked for without Ray."""
    from dcgan_cli.ablate import executors

    if executor == "ray" and not executors.ray_available():
        raise UserError('--executor ray: Ray is not installed; pip install "dcgan-cli[ray]". Received: ray')
    return cpus_per_run if executor == "ray" else max(1, executors.cores() // (jobs or 1))


raw_option = click.option("--raw", is_flag=True,
                          help="Use G's trained weights, not the moving average a checkpoint holds (train.ema_decay).")


class RunFailed(click.ClickException):
    """Training stopped by something other than the user's input (divergence, a full disk): exit code 1."""

    exit_code = 1


@contextmanager
def training_outcomes(*mistakes: type[Exception]):
    """How a training run ends at the CLI: `mistakes` (and config errors) exit 2 in one line, a signal exits
    128 + N after its checkpoint, the monitor's stop exits 3 (STOPPED_BY_MONITOR) after its checkpoint, a run that
    failed exits 1. Keras must be started already."""
    from dcgan_cli.training import upkeep

    try:
        yield
    except mistakes as error:
        raise UserError(str(error)) from None
    except ConfigError as error:
        raise UserError("invalid config:\n  " + "\n  ".join(error.problems)) from None
    except upkeep.Interrupted as error:
        click.echo(str(error), err=True)
        sys.exit(128 + error.signum)
    except upkeep.MonitorStopped as error:
        click.echo(str(error), err=True)
        sys.exit(STOPPED_BY_MONITOR)
    except upkeep.TrainingError as error:
        raise RunFailed(str(error)) from None


@contextmanager
def study_worker(threads: int | None, *mistakes: type[Exception]):
    """The body of a study's worker process (`dcgan ablate-run`, `dcgan tune-run`): Ctrl-C works even when started
    with SIGINT ignored, the compute threads are capped, Keras is started; a directory another process holds exits
    with the executors' BUSY code, and the rest ends as training_outcomes says (`mistakes` exit 2 too)."""
    import signal

    from dcgan_cli.ablate.executors import BUSY, thread_env

    signal.signal(signal.SIGINT, signal.default_int_handler)
    if threads is not None:
        os.environ.update(thread_env(threads))
    start_keras()
    from dcgan_cli.ablate.design import AblationError
    from dcgan_cli.ablate.worker import Busy
    from dcgan_cli.data.common import DataError
    from dcgan_cli.evaluate.features import EvaluationError
    from dcgan_cli.state.checkpoint import CheckpointError

    try:
        with training_outcomes(AblationError, CheckpointError, DataError, EvaluationError, *mistakes):
            yield
    except Busy as error:
        click.echo(str(error), err=True)
        sys.exit(BUSY)
