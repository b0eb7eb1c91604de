"""Reading and editing a loaded config: as plain data or YAML, one value replaced, flattened to SECTION.KEY
paths, compared with another; and which values fix the networks' architecture."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import yaml

from dcgan_cli.config.schema import Config


def to_dict(config: Config) -> dict:
    """The config as plain YAML-ready data (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value
    return plain(dataclasses.asdict(config))


def to_yaml(config: Config) -> str:
    """The fully resolved config as YAML text, in section and field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def replace_value(config: Config, path: str, value: Any) -> Config:
    """A copy of `config` with the one value at `SECTION.KEY` replaced (unchecked: for values the code sets)."""
    section, key = path.split(".")
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{key: value})})


# The values that fix the networks' layers and weight shapes: a checkpoint only loads into the same architecture.
ARCHITECTURE = (
    "model.image_size", "model.channels", "model.latent_dim", "model.g_filters", "model.d_filters",
    "model.max_filters", "model.kernel_size", "model.g_activation", "hacks.strided_conv", "hacks.transposed_conv",
    "hacks.leaky_relu", "hacks.batch_norm", "hacks.scale_images", "hacks.minibatch_std",
    "hacks.spectral_norm", "hacks.g_dropout",
)
# ... and with hack 21 on (left out when off, so checkpoints written before it keep their hash).
CONDITIONAL_ARCHITECTURE = ("hacks.class_conditional", "hacks.conditioning", "hacks.g_conditioning")


def flatten(config: Config) -> dict[str, Any]:
    """{"section.key": value} for every value of the config."""
    return {f"{section}.{key}": value for section, values in to_dict(config).items() for key, value in values.items()}


def differences(old: Config, new: Config, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) for every value that differs, in config order."""
    before, after = flatten(old), flatten(new)
    return [(path, before[path], after[path]) for path in before
            if path not in ignore and before[path] != after[path]]
