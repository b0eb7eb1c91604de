"""The one strict loader: YAML files and `--set SECTION.KEY=VALUE` overrides read the same way, every value checked
against its field (config/checks.py), every problem reported at once as a ConfigError before anything is built or
written."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml

from dcgan_cli.config.checks import check_value, cross_checks, show_value, suggest, suggest_key
from dcgan_cli.config.edit import to_dict
from dcgan_cli.config.schema import SECTIONS, Config
from dcgan_cli.files import one_line


class ConfigError(ValueError):
    """One or more problems with a config, each a line naming the key path."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads `1e-4` as a float (PyYAML's YAML 1.1 rules read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text safely (no code runs); a syntax error becomes a ConfigError naming `source`."""
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: not valid YAML: {one_line(error, limit=400)}"]) from None


# Keys that earlier versions had, and why they went. A config this tool wrote then (a run's, a checkpoint's, a
# study's) still loads, without them; a user's file or --set that gives one is told why.
RETIRED = {
    "monitor.d_wins_loss": "the d_wins rule now judges D(G(z)) and G's gradient norm (monitor.d_wins_margin, "
                           "monitor.d_wins_grad_norm), not D's loss, which the label hacks move; remove the key",
    "monitor.d_wins_output": "D(G(z)) cannot fall below the share of flipped fake labels, so the d_wins rule now "
                             "judges it from that floor up (monitor.d_wins_margin); remove the key",
}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), *, saved: bool = False,
                defaults: Iterable[str] = ()) -> Config:
    """Read a config file (or only defaults), apply `SECTION.KEY=VALUE` overrides, and check everything. `saved`:
    the file is one this tool wrote (config.yaml of a run, a checkpoint or a study), whose RETIRED keys are
    dropped. `defaults` (SECTION.KEY=VALUE) stand in for the schema's defaults of a command (a screen's precision):
    a key the file or an override gives keeps its value."""
    problems: list[str] = []
    raw = _read_file(Path(path), problems) if path is not None else {}
    named = {f"{section}.{key}" for section, values in raw.items() if isinstance(values, dict) for key in values}
    named |= {override.partition("=")[0].strip() for override in overrides}
    raw = _apply_overrides(raw, [d for d in defaults if d.partition("=")[0].strip() not in named], problems)
    raw = _apply_overrides(raw, overrides, problems)
    config = _build(raw, problems, saved=saved)
    if problems:
        raise ConfigError(problems)
    return config


def with_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """`config` with `SECTION.KEY=VALUE` overrides applied and everything checked again, as load_config does."""
    problems: list[str] = []
    changed = _build(_apply_overrides(to_dict(config), overrides, problems), problems)
    if problems:
        raise ConfigError(problems)
    return changed


def problems_of(config: Config) -> list[str]:
    """The problems of a config built by replacing values (ablation variants), which involve more than one value."""
    return cross_checks(config)


def checked_value(path: str, value: Any) -> Any:
    """`value` for the key at SECTION.KEY as the loader's own check of that key accepts it (converted to its type),
    without cross-checks; ConfigError with the loader's one-line problem."""
    section, key = _known_path(path)
    problems: list[str] = []
    built = _build_section(section, {key: value}, problems)
    if problems:
        raise ConfigError(problems)
    return getattr(built, key)


def value_type(path: str) -> Any:
    """The type hint of the key at SECTION.KEY (bool, int, float, str, a tuple range, or an optional); ConfigError
    naming an unknown key, with a suggestion as the loader gives it."""
    section, key = _known_path(path)
    return typing.get_type_hints(SECTIONS[section])[key]


def _known_path(path: str) -> tuple[str, str]:
    section, _, key = path.partition(".")
    if section not in SECTIONS or not key or "." in key:
        raise ConfigError([f"{path}: unknown key; expected SECTION.KEY with a section of {', '.join(SECTIONS)}"
                           f"{suggest(section, SECTIONS)}. Received: {path!r}"])
    if key not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        raise ConfigError([f"{path}: unknown key{suggest_key(key, section)}"])
    return section, key


def _read_file(path: Path, problems: list[str]) -> dict:
    """The file's top-level mapping; {} (with the problem recorded) when it cannot be read or is not a mapping."""
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path}: cannot read the config file ({error.__class__.__name__}). Received: {str(path)!r}")
        return {}
    except ConfigError as error:
        problems.extend(error.problems)
        return {}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}). Received: {show_value(raw)}")
        return {}
    return raw


def _apply_overrides(raw: dict, overrides: Iterable[str], problems: list[str]) -> dict:
    """Merge `SECTION.KEY=VALUE` strings into a copy of the raw mapping; values are YAML scalars."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            problems.append(f"--set {override}: expected SECTION.KEY=VALUE, e.g. hacks.batch_norm=false. "
                            f"Received: {override!r}")
            continue
        try:
            value = parse_yaml(text, source=f"--set {key}")
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        section, name = parts
        if key.strip() in RETIRED:
            problems.append(_retired(key.strip(), repr(text.strip())))
            continue
        target = merged.setdefault(section, {})
        if isinstance(target, dict):
            target[name] = value
    return merged


def _retired(path: str, shown: str) -> str:
    """The problem of a RETIRED key given by a user: what replaced it."""
    return f"{path}: no longer a setting: {RETIRED[path]}. Received: {shown}"


def _build(raw: dict, problems: list[str], *, saved: bool = False) -> Config:
    """Turn the raw mapping into a Config, appending every problem found to `problems` (`saved`: see
    load_config)."""
    sections = {}
    for section, value in raw.items():
        if section not in SECTIONS:
            problems.append(f"{section}: unknown section{suggest(str(section), SECTIONS)}")
        elif value is not None and not isinstance(value, dict):
            problems.append(f"{section}: expected a mapping of settings. Received: {show_value(value)}")
        else:
            sections[section] = _build_section(section, value or {}, problems, saved=saved)
    config = Config(**sections)
    problems.extend(cross_checks(config))
    return config


def _build_section(section: str, values: dict, problems: list[str], *, saved: bool = False) -> Any:
    """Check one section's keys and values; invalid values fall back to defaults so checking can go on."""
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    accepted = {}
    for key, value in values.items():
        path = f"{section}.{key}"
        if path in RETIRED:
            if not saved:
                problems.append(_retired(path, show_value(value)))
            continue
        if key not in fields:
            problems.append(f"{path}: unknown key{suggest_key(str(key), section)}")
            continue
        try:
            accepted[key] = check_value(value, hints[key], fields[key].metadata)
        except ValueError as error:
            problems.append(f"{path}: {error}. Received: {show_value(value)}")
    return cls(**accepted)
