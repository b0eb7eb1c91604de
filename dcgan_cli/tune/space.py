"""A search space: config keys mapped to distributions, read from YAML and checked by the config's own rules
before any trial starts.

    hacks.learning_rate: {log_uniform: [5.0e-5, 1.0e-3]}
    hacks.beta_1: {choice: [0.0, 0.5, 0.9]}
    train.ema_decay: {uniform: [0.99, 0.9999]}
    hacks.d_steps: {int: [1, 3]}                     # also log_int
    hacks.real_label_range: {choice: [[0.7, 1.2], [0.9, 1.0]]}
    hacks.r1_penalty: {choice: [true, false]}

Numbers take uniform, log_uniform (floats) or int, log_int (integers), or choice; other keys take choice. Each
bound and each choice must pass the key's own check, as in a config file. Whether a drawn combination passes the
checks that involve several keys is known only when it is drawn: such a trial is refused and marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcgan_cli import config as config_module
from dcgan_cli.config import Config, ConfigError, checked_value, parse_yaml, show_value, value_type

RANGES = ("uniform", "log_uniform", "int", "log_int")
KINDS = (*RANGES, "choice")
FIXED = ("data.", "output.", "train.seed")  # what a trial cannot vary: the data, what a run writes, the seeds
NUMERIC = {float: ("uniform", "log_uniform", "choice"), int: ("int", "log_int", "choice")}


class SpaceError(ValueError):
    """Problems with a search space, each a line naming the key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Param:
    """One searched key: a range (low, high) of a kind in RANGES, or the choices."""

    path: str
    kind: str
    values: tuple

    def distribution(self):
        """Optuna's distribution for this key (choices of ranges travel as their YAML text)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution([_encoded(value) for value in self.values])
        low, high = self.values
        if self.kind in ("int", "log_int"):
            return IntDistribution(low, high, log=self.kind == "log_int")
        return FloatDistribution(low, high, log=self.kind == "log_uniform")

    def value(self, drawn: Any) -> Any:
        """The config value of what Optuna drew."""
        if self.kind == "choice":
            return next(value for value in self.values if _encoded(value) == drawn)
        return drawn

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(word(value) for value in self.values)
        return f"{self.kind} [{self.values[0]:g}, {self.values[1]:g}]"


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    def distributions(self) -> dict:
        return {param.path: param.distribution() for param in self.params}

    def values(self, drawn: dict[str, Any]) -> dict[str, Any]:
        """{key: config value} of Optuna's drawn parameters."""
        return {param.path: param.value(drawn[param.path]) for param in self.params if param.path in drawn}

    def apply(self, base: Config, values: dict[str, Any]) -> Config:
        """`base` with the values set; ConfigError when the combination fails the config's cross-checks."""
        cfg = base
        for path, value in values.items():
            cfg = config_module.replace_value(cfg, path, value)
        problems = config_module.problems_of(cfg)
        if problems:
            raise ConfigError(problems)
        return cfg

    def drawn(self, cfg: Config) -> dict[str, Any]:
        """Optuna's parameters that give `cfg`'s own values: for each key whose value in `cfg` the space holds
        (among its choices, within its range); the others are left for the sampler."""
        found = {}
        for param in self.params:
            section, key = param.path.split(".")
            value = getattr(getattr(cfg, section), key)  # as the config holds it: ranges and lists as tuples
            if param.kind == "choice":
                if value in param.values:
                    found[param.path] = _encoded(value)
            elif value is not None and param.values[0] <= value <= param.values[1]:
                found[param.path] = value
        return found

    def to_dict(self) -> dict:
        """The space as YAML-ready data, as it was read (ranges as lists)."""
        return {p.path: {p.kind: [list(v) if isinstance(v, tuple) else v for v in p.values]} for p in self.params}


def load_space(path: Path) -> Space:
    """The space in a YAML file; SpaceError naming the file and each bad key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError([f"{path}: cannot read the search space ({error.__class__.__name__}). "
                          f"Received: {str(path)!r}"]) from None
    try:
        raw = parse_yaml(text, source=str(path))
    except ConfigError as error:
        raise SpaceError(error.problems) from None
    return parse_space(raw, source=str(path))


def parse_space(raw: Any, *, source: str) -> Space:
    if not isinstance(raw, dict) or not raw:
        raise SpaceError([f"{source}: expected a mapping of config keys to distributions, e.g. "
                          f"hacks.learning_rate: {{log_uniform: [5.0e-5, 1.0e-3]}}. Received: {show_value(raw)}"])
    params, problems = [], []
    for path, entry in raw.items():
        try:
            params.append(_param(str(path), entry))
        except SpaceError as error:
            problems.extend(f"{source}: {problem}" for problem in error.problems)
    if problems:
        raise SpaceError(problems)
    return Space(tuple(params))


def _param(path: str, entry: Any) -> Param:
    try:
        hint = value_type(path)
    except ConfigError as error:
        raise SpaceError(error.problems) from None
    if path.startswith(FIXED):
        raise SpaceError([f"{path}: cannot be searched (the data, the output settings and the seeds are the "
                          f"study's; --seeds sets how many seeds each trial trains). Received: {path}"])
    if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in KINDS:
        raise SpaceError([f"{path}: expected one distribution, {{KIND: ARGS}} with KIND one of {', '.join(KINDS)}. "
                          f"Received: {show_value(entry)}"])
    kind, args = next(iter(entry.items()))
    number = hint if hint in NUMERIC else next((t for t in NUMERIC if hint == (t | None)), None)
    allowed = NUMERIC[number] if number else ("choice",)
    if kind not in allowed:
        raise SpaceError([f"{path}: {kind} does not fit this key ({_type_word(hint)}); use "
                          f"{' or '.join(allowed)}. Received: {{{kind}: {show_value(args)}}}"])
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SpaceError([f"{path}: choice expects a non-empty list of values. Received: {show_value(args)}"])
        values = tuple(_checked(path, value) for value in args)
        if len({_encoded(value) for value in values}) != len(values):
            raise SpaceError([f"{path}: choice lists a value twice. Received: {show_value(args)}"])
        return Param(path, kind, values)
    if not isinstance(args, list) or len(args) != 2:
        raise SpaceError([f"{path}: {kind} expects [low, high]. Received: {show_value(args)}"])
    integer = kind in ("int", "log_int")
    for bound in args:
        if isinstance(bound, bool) or not isinstance(bound, int if integer else (int, float)):
            raise SpaceError([f"{path}: {kind} expects {'integer' if integer else 'number'} bounds. "
                              f"Received: {show_value(args)}"])
    low, high = (_checked(path, bound) for bound in args)
    if not low < high:
        raise SpaceError([f"{path}: {kind} expects low < high. Received: {show_value(args)}"])
    if kind.startswith("log") and low <= 0:
        raise SpaceError([f"{path}: {kind} expects bounds above 0. Received: {show_value(args)}"])
    if not integer and not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError([f"{path}: {kind} expects finite bounds. Received: {show_value(args)}"])
    return Param(path, kind, (low, high))


def _checked(path: str, value: Any) -> Any:
    try:
        return checked_value(path, value)
    except ConfigError as error:
        raise SpaceError(error.problems) from None


def _encoded(value: Any) -> Any:
    """A choice as Optuna stores it: scalars as they are, ranges and lists as their YAML text ("[0.7, 1.2]",
    "[color, cutout]")."""
    if not isinstance(value, tuple):
        return value
    return "[" + ", ".join(item if isinstance(item, str) else repr(item) for item in value) + "]"


def word(value: Any) -> str:
    """A config value as YAML writes it: true, 0.0002, [0.7, 1.2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _encoded(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)


def _type_word(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "one of its words"}
    if hint == tuple[str, ...]:
        return "a list of its words"
    return names.get(hint, "a range [low, high]" if str(hint).startswith("tuple") else "an optional value")
