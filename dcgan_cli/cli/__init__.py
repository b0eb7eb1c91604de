"""The `dcgan` command: train, report, sample, export, evaluate, ablate, tune, summary, data, config. Heavy imports
live inside the commands."""

from __future__ import annotations

import os

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the useful output

from dcgan_cli.cli import ablation, generating, inspecting, training, tuning  # noqa: E402 (after the env default)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dcgan-cli")
def main() -> None:
    """Train DCGANs where every GAN hack is a line in a YAML file."""


for command in (training.train, training.report, generating.sample, generating.export, generating.evaluate,
                ablation.ablate, ablation.ablate_run, tuning.tune, tuning.tune_run, inspecting.summary,
                inspecting.show_data, inspecting.show_config):
    main.add_command(command)
