"""dcgan-cli: a DCGAN trainer where every GAN hack is a line in a YAML file."""

from dcgan_cli.machine import default_onednn

default_onednn()  # before any engine starts: TensorFlow reads its oneDNN switch once, when it is imported
