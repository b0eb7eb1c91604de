"""`dcgan summary`, `dcgan data` and `dcgan config`: look before training."""

from __future__ import annotations

from pathlib import Path

import click

from dcgan_cli.cli.common import UserError, config_option, load, set_option, start_keras, writing
from dcgan_cli.config import Config, to_yaml


@click.command()
@config_option
@set_option
def summary(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the generator's and the discriminator's layer tables (shapes and parameter counts); a
    class-conditional config (hack 21) reads its data for the classes, whose count sizes the class layers."""
    cfg = load(config_path, overrides)
    start_keras()
    import numpy as np

    from dcgan_cli.nets.models import Classes, build_discriminator, build_generator, summary

    classes = Classes.of(_dataset(cfg)) if cfg.hacks.class_conditional else None
    rng = np.random.default_rng(cfg.train.seed)
    for model in (build_generator(cfg, rng, classes), build_discriminator(cfg, rng, classes)):
        click.echo(summary(model))


@click.command("data")
@config_option
@set_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("real.png"), show_default=True,
              help="Grid PNG of real training images to write.")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True, help="Images in the grid.")
def show_data(config_path: Path, overrides: tuple[str, ...], out: Path, count: int) -> None:
    """Show what would be trained on (count, shape, range, memory, cache, labels) and write a grid of real images."""
    cfg = load(config_path, overrides)
    import numpy as np

    from dcgan_cli import images
    from dcgan_cli.data import sources

    dataset = _dataset(cfg)
    for line in sources.describe(dataset):
        click.echo(line)
    sample = sources.sample_batch(dataset.images, min(count, len(dataset.images)),
                                  np.random.default_rng(cfg.train.seed))
    with writing(out):
        images.save_grid(sample, out)
    click.echo(f"wrote {out}", err=True)


def _dataset(cfg: Config):
    """The configured dataset; a data error is the user's, exit 2 with its message."""
    from dcgan_cli.data import sources

    try:
        return sources.load_dataset(cfg, progress=cfg.output.progress)
    except sources.DataError as error:
        raise UserError(str(error)) from None


@click.command("config")
@config_option
@set_option
def show_config(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config as YAML, every default filled in."""
    click.echo(to_yaml(load(config_path, overrides)), nl=False)
