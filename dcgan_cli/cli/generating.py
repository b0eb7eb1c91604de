"""`dcgan sample`, `dcgan export` and `dcgan evaluate`: what a trained generator gives."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dcgan_cli.cli.common import (
    UserError,
    features_option,
    generator,
    load,
    raw_option,
    set_option,
    start_keras,
    writing,
)
from dcgan_cli.config import ConfigError


@click.command()
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
@click.option("--class", "class_name",
              help="A class-conditional G (hacks.class_conditional): draw only this class (its name, or its index), "
                   "also along --interpolate's walks.")
@click.option("--per-class", type=click.IntRange(min=1),
              help="A class-conditional G: instead of --n images, a grid of this many per class, one labelled row "
                   "per class.")
@raw_option
def sample(checkpoint_path: Path, count: int, seed: int, out: Path, individual: Path | None, truncate: float | None,
           walks: int | None, frames: int, method: str, gif: Path | None, class_name: str | None,
           per_class: int | None, raw: bool) -> None:
    """Generate images from a checkpoint into a grid PNG (and optionally one PNG per image), or with --interpolate,
    walks between latents as a grid with one walk per row (and optionally an animated GIF). A class-conditional G
    draws its classes as often as its training data had them, or only --class, or --per-class rows."""
    if gif is not None and walks is None:
        raise UserError(f"--gif animates the walks of --interpolate; give --interpolate K too. Received: {str(gif)!r}")
    if per_class is not None and (walks is not None or class_name is not None):
        raise UserError(f"--per-class draws every class in rows of its own; it goes with neither --interpolate nor "
                        f"--class. Received: --per-class {per_class}")
    start_keras()
    import numpy as np

    from dcgan_cli import images
    from dcgan_cli.nets import sampling
    from dcgan_cli.nets.models import generate
    from dcgan_cli.state import checkpoint

    found, cfg, g = generator(checkpoint_path, raw=raw)
    classes = checkpoint.saved_classes(found)
    if classes is None and (class_name is not None or per_class is not None):
        option = "--class" if class_name is not None else "--per-class"
        raise UserError(f"{option}: {found} holds an unconditional G (hacks.class_conditional was off), which "
                        f"cannot be asked for a class. Received: {option} {class_name or per_class}")
    try:
        chosen = None if class_name is None else classes.index(class_name)
    except ValueError as error:
        raise UserError(f"--class: {error}. Received: {class_name!r}") from None
    rng = np.random.default_rng(seed)

    def labels(n: int):
        """The classes of n images: --class's, else drawn as often as in the data (None: an unconditional G)."""
        if classes is None:
            return None
        return np.full(n, chosen, np.int32) if chosen is not None else classes.drawn(rng, n)

    if per_class is not None:
        z = sampling.latents(rng, classes.count * per_class, cfg, truncate=truncate)
        pictures = generate(g, z, cfg, classes.rows(per_class))
        with writing(out):
            images.save_png(images.label_rows(images.grid(pictures, cols=per_class), list(classes.names)), out)
        click.echo(f"wrote {out} ({per_class} images of each of {classes.count} classes from {found})", err=True)
    elif walks is None:
        z = sampling.latents(rng, count, cfg, truncate=truncate)
        pictures = generate(g, z, cfg, labels(count))
        with writing(out):
            images.save_grid(pictures, out)
        what = f" of class {classes.names[chosen]}" if chosen is not None else ""
        click.echo(f"wrote {out} ({count} images{what} from {found})", err=True)
    else:
        z = sampling.interpolation_latents(rng, walks, cfg, frames=frames, method=method, truncate=truncate)
        walk_classes = labels(walks)  # one class per walk, kept along it
        pictures = generate(g, z.reshape(walks * frames, -1), cfg,
                            None if walk_classes is None else np.repeat(walk_classes, frames))
        per_walk = pictures.reshape(walks, frames, *pictures.shape[1:])
        with writing(out):
            sampling.save_walks(per_walk, out)
        if gif is not None:
            with writing(gif):
                sampling.save_walks_gif(per_walk, gif)
        click.echo(f"wrote {out}{f' and {gif}' if gif else ''} ({walks} walks of {frames} images, {method}, "
                   f"from {found})", err=True)
    if individual is not None:
        with writing(individual):
            images.save_each(pictures, individual)
        click.echo(f"wrote {len(pictures)} images into {individual}", err=True)


@click.command()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(path_type=Path), required=True,
              help="A run directory (its newest checkpoint) or one checkpoint directory.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("generator.keras"),
              show_default=True, help="The .keras file to write.")
@raw_option
def export(checkpoint_path: Path, out: Path, raw: bool) -> None:
    """Write the generator as a standalone Keras model: latents in (and a class-conditional G's classes), images
    in [0, 255] out (the pixel scaling baked in), loadable with plain Keras, without dcgan-cli; the latent's size
    and distribution, and the class names, are recorded in the archive's dcgan.json."""
    if out.suffix != ".keras":
        raise UserError(f"--out: Keras saves whole models as .keras files. Received: {str(out)!r}")
    start_keras()
    from dcgan_cli.nets import sampling

    from dcgan_cli.state import checkpoint

    found, cfg, g = generator(checkpoint_path, raw=raw)
    classes = checkpoint.saved_classes(found)
    with writing(out):
        sampling.export(g, cfg, out, classes)
    info = sampling.export_info(cfg, classes)
    click.echo(f"wrote {out} from {found}: input {info['input']}; output {info['output']}", err=True)


@click.command()
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
@click.option("--reference", "statistics", type=click.Path(dir_okay=False, path_type=Path),
              help="With --features fid: score against precomputed statistics (an .npz of mu and sigma, as "
                   "pytorch-fid saves them) instead of the config's data; FID alone is scored.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the latent draw.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to record the result [default: eval.json in the checkpoint or image folder; eval-raw.json "
                   "with --raw].")
@raw_option
def evaluate(checkpoint_path: Path | None, images: Path | None, config_path: Path | None,
             overrides: tuple[str, ...], count: int | None, features: str | None, statistics: Path | None,
             seed: int, as_json: bool, out: Path | None, raw: bool) -> None:
    """Score a checkpoint's generator (or a folder of images) against the real training data.

    Domain features: Frechet distance in a classifier's feature space, modes covered, class-histogram KL, mean
    confidence. Rotation features: Frechet distance without labels. fid: FID and KID in the standard network of
    published FIDs, with the protocol. All: k-NN precision and recall. The result goes into eval.json.
    """
    if (checkpoint_path is None) == (images is None):
        raise UserError("give either --checkpoint PATH or --images DIR (with --config)")
    if images is not None and config_path is None:
        raise UserError("--images needs --config: the config whose data the images are compared with")
    if checkpoint_path is not None and config_path is not None:
        raise UserError("--config is for --images; a checkpoint is scored with its own config "
                        "(change where its data is with --set data.path=...)")
    cfg = load(config_path, overrides) if config_path is not None else None
    start_keras()
    from dcgan_cli.state import checkpoint
    from dcgan_cli.data.common import DataError
    from dcgan_cli.evaluate import results, scoring
    from dcgan_cli.evaluate.features import EvaluationError

    try:
        if checkpoint_path is not None:
            found, result = scoring.evaluate_checkpoint(
                checkpoint_path, count=count or 5000, features=features, seed=seed, overrides=overrides,
                statistics=statistics, raw=raw)
            target = out or found / (scoring.RAW_SCORES_FILE if raw else scoring.SCORES_FILE)
        else:
            result = scoring.evaluate_images(images, cfg, limit=count, features=features, statistics=statistics)
            target = out or images / scoring.SCORES_FILE
    except (checkpoint.CheckpointError, DataError, EvaluationError) as error:
        raise UserError(str(error)) from None
    except ConfigError as error:
        raise UserError("invalid config:\n  " + "\n  ".join(error.problems)) from None
    with writing(target):
        results.write_result(target, result)
    click.echo(json.dumps(result, indent=1) if as_json else "\n".join(results.lines(result)))
    click.echo(f"wrote {target}", err=True)
