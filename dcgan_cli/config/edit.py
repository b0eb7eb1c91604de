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
    "hacks.spectral_norm", "hacks.g_dropout", "model.base_size",
)
# Architecture values a checkpoint's hash holds only where they differ from these defaults, so that checkpoints
# written before the key existed keep their hash.
HASHED_OFF_DEFAULT = {"model.base_size": 4}
# ... and with hack 21 on (left out when off, so checkpoints written before it keep their hash).
CONDITIONAL_ARCHITECTURE = ("hacks.class_conditional", "hacks.conditioning", "hacks.g_conditioning")


def with_defaults(saved: dict) -> dict:
    """A config as to_dict wrote it, perhaps before some keys existed, with each key it lacks at its default: what
    the same config reads as now (a study's saved base compared with today's)."""
    defaults = to_dict(Config())
    return {section: {**defaults.get(section, {}), **values} if isinstance(values, dict) else values
            for section, values in saved.items()}


def flatten(config: Config) -> dict[str, Any]:
    """{"section.key": value} for every value of the config."""
    return {f"{section}.{key}": value for section, values in to_dict(config).items() for key, value in values.items()}


def differences(old: Config, new: Config, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) for every value that differs, in config order."""
    before, after = flatten(old), flatten(new)
    return [(path, before[path], after[path]) for path in before
            if path not in ignore and before[path] != after[path]]
