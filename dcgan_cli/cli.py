"""The `dcgan` command: train, sample, evaluate, ablate, summary, data, config. Heavy imports live inside the
commands."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from dcgan_cli.config import Config, ConfigError, load_config, to_yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the useful output


class UserError(click.ClickException):
    """A mistake in the user's input: printed as one clean message, exit code 2, no traceback."""

    exit_code = 2


def _load(config_path: Path | None, overrides: tuple[str, ...]) -> Config:
    try:
        return load_config(config_path, overrides)
    except ConfigError as error:
        raise UserError("invalid config:\n  " + "\n  ".join(error.problems)) from None


@contextmanager
def _writing(path: Path):
    """An output file the user named that cannot be written: one line, exit code 2."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}. Received: {str(path)!r}") from None


def _generator(checkpoint_path: Path, *, raw: bool):
    """The checkpoint a path names, its config and its G (the moving average where kept, unless `raw`)."""
    from dcgan_cli import checkpoint

    try:
        found = checkpoint.resolve(checkpoint_path)
        return (found, *checkpoint.load_generator(found, raw=raw))
    except (checkpoint.CheckpointError, ConfigError) as error:
        raise UserError(str(error)) from None


def _start_keras() -> None:
    """Import Keras and run one op with the C++ start-up chatter on stderr (absl, oneDNN, CUDA probes) hidden;
    Python errors still surface, since only the process's raw stderr is silenced and only meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras

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

features_option = click.option("--features", type=click.Choice(["domain", "inception"]), default=None,
                               help="Feature space of the scores [default: domain where the data has class labels, "
                                    "else inception (FID, KID)].")
inception_option = click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
                                envvar="DCGAN_INCEPTION_WEIGHTS", show_envvar=True,
                                help="InceptionV3's ImageNet weights file (Keras' ..._notop.h5), for offline use.")

raw_option = click.option("--raw", is_flag=True,
                          help="Use G's trained weights, not the moving average a checkpoint holds (train.ema_decay).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dcgan-cli")
def main() -> None:
    """Train DCGANs where every GAN hack is a line in a YAML file."""


class RunFailed(click.ClickException):
    """Training stopped by something other than the user's input (divergence, a full disk): exit code 1."""

    exit_code = 1


@contextmanager
def _training_outcomes(*mistakes: type[Exception]):
    """How a training run ends at the CLI: `mistakes` (and config errors) exit 2 in one line, a signal exits
    128 + N after its checkpoint, a run that failed exits 1. Keras must be started already."""
    from dcgan_cli import train as training

    try:
        yield
    except mistakes as error:
        raise UserError(str(error)) from None
    except ConfigError as error:
        raise UserError("invalid config:\n  " + "\n  ".join(error.problems)) from None
    except training.Interrupted as error:
        click.echo(str(error), err=True)
        sys.exit(128 + error.signum)
    except training.TrainingError as error:
        raise RunFailed(str(error)) from None


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file (see configs/default.yaml for every key). With --resume, optional.")
@set_option
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the run's files go (default: output.run_dir, else runs/<config name>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in the run directory from its newest complete checkpoint.")
def train(config_path: Path | None, overrides: tuple[str, ...], run_dir: Path | None, resume: bool) -> None:
    """Train G and D from a config; write samples, checkpoints and metrics into one run directory.

    Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and exits; --resume continues exactly.
    """
    if config_path is None and not (resume and run_dir is not None):
        raise UserError("give --config PATH, or --resume --run-dir DIR to continue a run with its saved config")
    cfg = _load(config_path, overrides) if config_path is not None else None
    _start_keras()
    from dcgan_cli import checkpoint, rundir
    from dcgan_cli import train as training
    from dcgan_cli.data import DataError
    from dcgan_cli.evaluate.features import EvaluationError

    try:
        with _training_outcomes(rundir.RunDirError, checkpoint.CheckpointError, DataError, EvaluationError):
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


@main.command()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(path_type=Path), required=True,
              help="A run directory (its newest checkpoint) or one checkpoint directory.")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True, help="Images to generate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latent draw.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("grid.png"), show_default=True,
              help="Grid PNG to write.")
@click.option("--individual", type=click.Path(file_okay=False, path_type=Path),
              help="Also write each image as its own PNG into this directory.")
@click.option("--truncate", type=click.FloatRange(min=0, min_open=True),
              help="Draw again every latent component beyond this many standard deviations (truncation trick).")
@click.option("--interpolate", "walks", type=click.IntRange(min=1),
              help="Instead of --n images: this many rows, each a walk between two random latents.")
@click.option("--frames", type=click.IntRange(min=2), default=8, show_default=True,
              help="--interpolate: images per walk, both ends included.")
@click.option("--method", type=click.Choice(["slerp", "linear"]), default="slerp", show_default=True,
              help="--interpolate: along the great circle (keeps Gaussian latents' norm) or a straight line.")
@click.option("--gif", type=click.Path(dir_okay=False, path_type=Path),
              help="--interpolate: also an animated GIF, one frame per step of the walks.")
@raw_option
def sample(checkpoint_path: Path, count: int, seed: int, out: Path, individual: Path | None, truncate: float | None,
           walks: int | None, frames: int, method: str, gif: Path | None, raw: bool) -> None:
    """Generate images from a checkpoint into a grid PNG (and optionally one PNG per image), or with --interpolate,
    walks between latents as a grid with one walk per row (and optionally an animated GIF)."""
    if gif is not None and walks is None:
        raise UserError(f"--gif animates the walks of --interpolate; give --interpolate K too. Received: {str(gif)!r}")
    _start_keras()
    import numpy as np

    from dcgan_cli import images, sampling
    from dcgan_cli.models import generate

    found, cfg, g = _generator(checkpoint_path, raw=raw)
    rng = np.random.default_rng(seed)
    if walks is None:
        pictures = generate(g, sampling.latents(rng, count, cfg, truncate=truncate), cfg)
        with _writing(out):
            images.save_grid(pictures, out)
        click.echo(f"wrote {out} ({count} images from {found})", err=True)
    else:
        z = sampling.interpolation_latents(rng, walks, cfg, frames=frames, method=method, truncate=truncate)
        pictures = generate(g, z.reshape(walks * frames, -1), cfg)
        per_walk = pictures.reshape(walks, frames, *pictures.shape[1:])
        with _writing(out):
            sampling.save_walks(per_walk, out)
        if gif is not None:
            with _writing(gif):
                sampling.save_walks_gif(per_walk, gif)
        click.echo(f"wrote {out}{f' and {gif}' if gif else ''} ({walks} walks of {frames} images, {method}, "
                   f"from {found})", err=True)
    if individual is not None:
        with _writing(individual):
            images.save_each(pictures, individual)
        click.echo(f"wrote {len(pictures)} images into {individual}", err=True)


@main.command()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(path_type=Path), required=True,
              help="A run directory (its newest checkpoint) or one checkpoint directory.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("generator.keras"),
              show_default=True, help="The .keras file to write.")
@raw_option
def export(checkpoint_path: Path, out: Path, raw: bool) -> None:
    """Write the generator as a standalone Keras model: latents in, images in [0, 255] out (the pixel scaling
    baked in), loadable with plain Keras, without dcgan-cli; the latent's size and distribution are recorded in
    the archive's dcgan.json."""
    if out.suffix != ".keras":
        raise UserError(f"--out: Keras saves whole models as .keras files. Received: {str(out)!r}")
    _start_keras()
    from dcgan_cli import sampling

    found, cfg, g = _generator(checkpoint_path, raw=raw)
    with _writing(out):
        sampling.export(g, cfg, out)
    info = sampling.export_info(cfg)
    click.echo(f"wrote {out} from {found}: input {info['input']}; output {info['output']}", err=True)


@main.command()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(path_type=Path),
              help="A run directory (its newest checkpoint) or one checkpoint directory, e.g. RUN/checkpoints/best.")
@click.option("--images", type=click.Path(path_type=Path),
              help="Score a folder of images made by any tool instead (needs --config: the real data and size).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --images: the config whose data and model.image_size the images are scored against.")
@set_option
@click.option("--n", "count", type=click.IntRange(min=10), default=None,
              help="Images to generate and score [default: 5000]; with --images, score at most this many.")
@features_option
@inception_option
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latent draw.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to record the result [default: eval.json in the checkpoint or image folder; eval-raw.json "
                   "with --raw].")
@raw_option
def evaluate(checkpoint_path: Path | None, images: Path | None, config_path: Path | None,
             overrides: tuple[str, ...], count: int | None, features: str | None, inception_weights: Path | None,
             seed: int, as_json: bool, out: Path | None, raw: bool) -> None:
    """Score a checkpoint's generator (or a folder of images) against the real training data.

    Domain features: Frechet distance in a classifier's feature space, modes covered, class-histogram KL, mean
    confidence. Inception features: FID and KID. Both: k-NN precision and recall. The result goes into eval.json.
    """
    if (checkpoint_path is None) == (images is None):
        raise UserError("give either --checkpoint PATH or --images DIR (with --config)")
    if images is not None and config_path is None:
        raise UserError("--images needs --config: the config whose data the images are compared with")
    if checkpoint_path is not None and config_path is not None:
        raise UserError("--config is for --images; a checkpoint is scored with its own config "
                        "(change where its data is with --set data.path=...)")
    cfg = _load(config_path, overrides) if config_path is not None else None
    _start_keras()
    from dcgan_cli import checkpoint
    from dcgan_cli.data import DataError
    from dcgan_cli.evaluate import scoring
    from dcgan_cli.evaluate.features import EvaluationError

    try:
        if checkpoint_path is not None:
            found, result = scoring.evaluate_checkpoint(
                checkpoint_path, count=count or 5000, features=features, seed=seed,
                inception_weights=inception_weights, overrides=overrides, raw=raw)
            target = out or found / (scoring.RAW_SCORES_FILE if raw else scoring.SCORES_FILE)
        else:
            result = scoring.evaluate_images(images, cfg, limit=count, features=features,
                                             inception_weights=inception_weights)
            target = out or images / scoring.SCORES_FILE
    except (checkpoint.CheckpointError, DataError, EvaluationError) as error:
        raise UserError(str(error)) from None
    except ConfigError as error:
        raise UserError("invalid config:\n  " + "\n  ".join(error.problems)) from None
    with _writing(target):
        scoring.write_result(target, result)
    click.echo(json.dumps(result, indent=1) if as_json else "\n".join(scoring.lines(result)))
    click.echo(f"wrote {target}", err=True)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The base config every variant changes (not needed with --report).")
@set_option
@click.option("--factors", default="all", show_default=True, metavar="all|NAME,NAME,...",
              help="What to vary: the eleven hacks by their key under hacks: (batch_norm, adam, ...) and "
                   "d_bn_in_g_update (D's BatchNorm statistics in the G update: batch or moving).")
@click.option("--design", type=click.Choice(["leave-one-out", "one-at-a-time", "factorial"]),
              default="leave-one-out", show_default=True,
              help="leave-one-out: the base and each factor switched alone; one-at-a-time: all factors off, then "
                   "each on alone; factorial: every combination.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per variant, with train.seed = base seed + 0, 1, ...")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs at once [default: 1 with --executor local; as many as Ray's resources allow with ray].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: processes on this machine; ray: Ray tasks (pip install \"dcgan-cli[ray]\").")
@click.option("--address", help="Ray: the address of an existing cluster [default: a local Ray instance on "
                                "127.0.0.1, started and stopped by this command].")
@click.option("--cpus-per-run", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray: CPUs each run asks for (and its compute threads).")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Ray: GPUs each run asks for (fractions share one).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The study's directory [default: runs/<config name>-<design>]. The same command continues it.")
@click.option("--n", "count", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Images of each run's final generator to score.")
@features_option
@inception_option
@click.option("--plan", is_flag=True, help="Write the study's directory and print one shell command per run "
                                           "(Slurm job arrays, GNU parallel), each capped at cores / --jobs "
                                           "threads; run nothing.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the report of the study in this directory from the runs finished so far; run nothing.")
@click.option("--yes", is_flag=True, help="Run a factorial design of more than 6 factors.")
def ablate(config_path: Path | None, overrides: tuple[str, ...], factors: str, design: str, seeds: int,
           jobs: int | None, executor: str, address: str | None, cpus_per_run: int, gpus_per_run: float,
           run_dir: Path | None, count: int, features: str | None, inception_weights: Path | None, plan: bool,
           report_dir: Path | None, yes: bool) -> None:
    """Measure which hacks matter: train each variant of a base config with several seeds, score every run, and
    write a report (report.md, results.csv, report.png, samples.png). Interrupted, the same command continues."""
    from dcgan_cli.ablate import executors
    from dcgan_cli.ablate import study as studies
    from dcgan_cli.ablate.design import AblationError, parse_factors, variants

    try:
        if report_dir is not None:
            _write_report(studies.load(report_dir))
            return
        if config_path is None:
            raise UserError("give --config PATH (the base config), or --report DIR to report on a study")
        if executor == "ray" and not executors.ray_available():
            raise UserError('--executor ray: Ray is not installed; pip install "dcgan-cli[ray]". Received: ray')
        base = _load(config_path, overrides)
        chosen, everything = parse_factors(factors)
        made, reference, varied, notes = variants(base, chosen, design=design, everything=everything,
                                                  allow_large=yes)
        root = run_dir or Path("runs") / f"{config_path.stem}-{design}"
        _start_keras()
        from dcgan_cli.ablate import runner

        evaluation = runner.evaluation_plan(base, count=count, features=features,
                                            inception_weights=inception_weights)
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
    threads = cpus_per_run if executor == "ray" else max(1, executors.cores() // (jobs or 1))
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


@main.command("ablate-run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Cap the run's compute threads (parallel runs share the cores).")
def ablate_run(directory: Path, threads: int | None) -> None:
    """Train and score one run of a study planned by `dcgan ablate` (what --plan prints one of per run)."""
    import signal

    from dcgan_cli.ablate.executors import BUSY, thread_env

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started with SIGINT ignored
    if threads is not None:
        os.environ.update(thread_env(threads))
    _start_keras()
    from dcgan_cli import checkpoint
    from dcgan_cli.ablate import worker
    from dcgan_cli.ablate.design import AblationError
    from dcgan_cli.data import DataError
    from dcgan_cli.evaluate.features import EvaluationError

    try:
        with _training_outcomes(AblationError, checkpoint.CheckpointError, DataError, EvaluationError):
            result = worker.run_one(directory)
    except worker.Busy as error:
        click.echo(str(error), err=True)
        sys.exit(BUSY)
    scores = result.get("scores", {})
    click.echo(f"{result['variant']} seed {result['seed']}: {result['status']}"
               + (f", {result['features']} scores " + ", ".join(f"{k} {scores[k]:.4g}" for k in (
                   "frechet_distance", "kid", "precision", "recall") if k in scores) if scores else "")
               + (", collapsed" if result.get("collapsed") else ""))


@main.command()
@config_option
@set_option
def summary(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the generator's and the discriminator's layer tables (shapes and parameter counts)."""
    cfg = _load(config_path, overrides)
    _start_keras()
    import numpy as np

    from dcgan_cli.models import build_discriminator, build_generator, summary

    rng = np.random.default_rng(cfg.train.seed)
    for model in (build_generator(cfg, rng), build_discriminator(cfg, rng)):
        click.echo(summary(model))


@main.command("data")
@config_option
@set_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("real.png"), show_default=True,
              help="Grid PNG of real training images to write.")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True, help="Images in the grid.")
def show_data(config_path: Path, overrides: tuple[str, ...], out: Path, count: int) -> None:
    """Show what would be trained on (count, shape, range, memory, cache, labels) and write a grid of real images."""
    cfg = _load(config_path, overrides)
    import numpy as np

    from dcgan_cli import data, images

    try:
        dataset = data.load_dataset(cfg, progress=cfg.output.progress)
    except data.DataError as error:
        raise UserError(str(error)) from None
    for line in data.describe(dataset):
        click.echo(line)
    sample = data.sample_batch(dataset.images, min(count, len(dataset.images)), np.random.default_rng(cfg.train.seed))
    with _writing(out):
        images.save_grid(sample, out)
    click.echo(f"wrote {out}", err=True)


@main.command("config")
@config_option
@set_option
def show_config(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config as YAML, every default filled in."""
    click.echo(to_yaml(_load(config_path, overrides)), nl=False)
