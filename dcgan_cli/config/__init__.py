"""Typed run configuration: the schema (one frozen dataclass per YAML section), the one strict loader with its
checks, and the helpers that read and edit a loaded config. Import from here; the modules are its rooms."""

from dcgan_cli.config.checks import show_value
from dcgan_cli.config.edit import (ARCHITECTURE, CONDITIONAL_ARCHITECTURE, HASHED_OFF_DEFAULT, differences, flatten,
                                   replace_value, to_dict, to_yaml, with_defaults)
from dcgan_cli.config.loader import (RETIRED, ConfigError, checked_value, load_config, parse_yaml, problems_of,
                                     value_type, with_overrides)
from dcgan_cli.config.schema import (AUGMENT_POLICY, DATASETS, FEATURE_SPACES, MONITOR_ACTIONS, NEEDS_PATH,
                                     RETIRED_SPACES, SECTIONS, Config, DataConfig, HacksConfig, ModelConfig,
                                     MonitorConfig, OutputConfig, TrainConfig, setting)

__all__ = [
    "ARCHITECTURE", "AUGMENT_POLICY", "CONDITIONAL_ARCHITECTURE", "DATASETS", "FEATURE_SPACES", "HASHED_OFF_DEFAULT",
    "MONITOR_ACTIONS", "NEEDS_PATH", "RETIRED", "RETIRED_SPACES", "SECTIONS", "Config", "ConfigError", "DataConfig",
    "HacksConfig", "ModelConfig", "MonitorConfig", "OutputConfig", "TrainConfig", "checked_value", "differences",
    "flatten", "load_config", "parse_yaml", "problems_of", "replace_value", "setting", "show_value", "to_dict",
    "to_yaml", "value_type", "with_defaults", "with_overrides",
]
