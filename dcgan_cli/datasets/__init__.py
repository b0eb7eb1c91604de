"""Dataset sources; `dcgan_cli.data` picks one from the config."""
