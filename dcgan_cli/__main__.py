"""`python -m dcgan_cli` runs the `dcgan` command."""

from dcgan_cli.cli import main

main(prog_name="dcgan")
