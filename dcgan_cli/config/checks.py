"""The checks of a config's values: each value against its field's type and range, the checks that involve more
than one value, and the suggestions for a misspelt key or word. Each problem is one line naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Iterable

from dcgan_cli.config.schema import NEEDS_PATH, SECTIONS, Config


def check_value(value: Any, hint: Any, checks: dict) -> Any:
    """Return `value` converted to the field's type, or raise ValueError saying what was expected."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if hint is str or hint == (str | None):
        if value is None and hint is not str:
            return None
        choices = checks.get("choices")
        if isinstance(value, bool) and choices and {"on", "off"} & set(choices):  # YAML 1.1: bare on/off are booleans
            value = "on" if value else "off"
        if isinstance(value, str) and value in checks.get("retired", {}):
            raise ValueError(f"no longer a choice: {checks['retired'][value]}")
        if not isinstance(value, str) or (choices and value not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "a string"
            hint_text = suggest(str(value), choices) if choices and isinstance(value, str) else ""
            raise ValueError(f"expected {expected}{hint_text}")
        return value
    if hint == (int | None):
        return None if value is None else check_value(value, int, checks)
    if hint is int or hint is float:
        number = _number(value, integer=hint is int)
        choices = checks.get("choices")
        if choices and number not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        _check_range(number, checks, integer=hint is int)
        return number
    if hint == tuple[str, ...]:
        return _words(value, checks["choices"])
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("expected a range [low, high]")
        low, high = (_number(item, integer=False) for item in value)
        if low > high:
            raise ValueError("expected a range [low, high] with low <= high")
        return (low, high)
    raise TypeError(f"no check for type {hint!r}")


def _words(value: Any, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty list of distinct words from `choices`, in the order of `choices` (so that [cutout, color] and
    [color, cutout] are one value)."""
    expected = f"expected a non-empty list of {', '.join(choices)}"
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(item, str) for item in value):
        raise ValueError(expected)
    unknown = [item for item in value if item not in choices]
    if unknown:
        raise ValueError(expected + suggest(unknown[0], choices))
    if len(set(value)) != len(value):
        raise ValueError(f"{expected}, each once")
    return tuple(choice for choice in choices if choice in value)


def _number(value: Any, *, integer: bool) -> int | float:
    """An int (or float) from a YAML scalar; booleans and non-finite floats are refused."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {kind}")
    if integer:
        if isinstance(value, float):
            raise ValueError("expected an integer")
        return value
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _check_range(number: float, checks: dict, *, integer: bool) -> None:
    """Raise ValueError when `number` lies outside the field's [low, high] (or [low, high))."""
    low, high, high_open = checks.get("low"), checks.get("high"), checks.get("high_open")
    kind = "an integer" if integer else "a number"
    if high is None:
        if low is not None and number < low:
            raise ValueError(f"expected {kind} >= {_plain(low)}")
        return
    bracket = ")" if high_open else "]"
    if number < low or number > high or (high_open and number == high):
        raise ValueError(f"expected {kind} in [{_plain(low)}, {_plain(high)}{bracket}")


def _plain(number: float) -> str:
    """1024 -> '1024', 0.5 -> '0.5', 4294967295 -> '4294967295'."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def cross_checks(config: Config) -> list[str]:
    """Problems that involve more than one value."""
    problems = []
    if config.data.name in NEEDS_PATH and config.data.path is None:
        problems.append(f"data.path: required when data.name is {config.data.name}. Received: None")
    if config.hacks.r1_penalty and config.train.loop != "compiled":
        problems.append("hacks.r1_penalty: needs train.loop: compiled; the train_on_batch loop's Keras calls cannot "
                        "differentiate D with respect to its input images. Received: true")
    if config.hacks.class_conditional and not config.data.labels:
        problems.append("hacks.class_conditional: needs data.labels: true (the classes G and D are given come from "
                        "the data). Received: true")
    if config.hacks.class_conditional and config.hacks.g_conditioning == "batch_norm" and not config.hacks.batch_norm:
        problems.append("hacks.g_conditioning: batch_norm puts the class into G's BatchNorm layers, and "
                        "hacks.batch_norm is off; use concat. Received: batch_norm")
    if config.hacks.replay and config.hacks.replay_size < config.train.batch_size:
        problems.append(f"hacks.replay_size: the buffer must hold at least one batch (train.batch_size "
                        f"{config.train.batch_size}). Received: {config.hacks.replay_size}")
    if config.hacks.adaptive_augment and config.hacks.diff_augment:
        problems.append("hacks.adaptive_augment: applies hack 20's operations with an adaptive probability, and "
                        "hacks.diff_augment applies them always; turn one off. Received: true")
    if config.hacks.adaptive_augment and config.hacks.ada_kimg <= 0:
        problems.append("hacks.ada_kimg: expected a number of thousands of images above 0. "
                        f"Received: {config.hacks.ada_kimg}")
    size = config.model.image_size
    if size % 2:
        problems.append("model.image_size: expected an even size (G doubles its base at least once). "
                        f"Received: {size}")
    elif size <= config.model.base_size:
        problems.append(f"model.base_size: G doubles its base at least once, so the base must be below "
                        f"model.image_size ({size}). Received: {config.model.base_size}")
    return problems


def suggest(word: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def suggest_key(key: str, section: str) -> str:
    """Suggest a key of this section, or the full path where the key belongs to another section."""
    local = suggest(key, (f.name for f in dataclasses.fields(SECTIONS[section])))
    if local:
        return local
    for other, cls in SECTIONS.items():
        if key in {f.name for f in dataclasses.fields(cls)}:
            return f"; did you mean '{other}.{key}'?"
    return ""


def show_value(value: Any) -> str:
    """A short, readable rendering of a user's value for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
