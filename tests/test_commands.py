"""Every `dcgan ...` command the project documents parses as the code stands: in README.md, the manual (docs/) and
the configs' comments, its subcommand exists, click accepts its options and their values, every --set key and value
passes the config schema (on the config the command names, where the repository holds it), and every file of the
repository it names exists. A page that drifts from the code fails here.

A command in a code block must parse whole, except one shown with the `Error:` it gets (a bad input on purpose),
whose subcommand alone must exist. A mention in running text (`dcgan sample --truncate`) or a synopsis
(`dcgan tune --config C [--trials N] | --report D`) is checked by its names: the subcommand, its options and its
--set keys."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from dcgan_cli.cli import main
from dcgan_cli.config import Config, ConfigError, flatten, load_config

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY_PATH = re.compile(r"^(configs|docs|bench|tests|dcgan_cli)/[\w./-]+$")  # files the repository holds


SHELL_OPERATORS = {">", ">>", "<", "|", "||", "&&", ";", "2>&1"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str
    mention: bool = False  # in running text: checked by its names
    refused: bool = False  # shown with the error it gets: a bad input on purpose


def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines with a trailing backslash joined to the next, each with the number of its first line."""
    joined, start, buffer = [], None, ""
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        joined.append((start, buffer + line))
        start, buffer = None, ""
    return joined


def commands_in_markdown(text: str, name: str) -> list[Command]:
    """The dcgan commands in a Markdown page: lines of its code blocks (a leading `$ ` dropped) and inline code."""
    found, block, inside = [], [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if inside:
                lines = _joined(block)
                for k, (n, t) in enumerate(lines):
                    refused = k + 1 < len(lines) and lines[k + 1][1].lstrip().startswith("Error:")
                    t = t.strip()
                    found.append(Command(f"{name}:{n}", t[2:] if t.startswith("$ ") else t, refused=refused))
            inside, block = not inside, []
            continue
        if inside:
            block.append((number, line))
        else:
            found += [Command(f"{name}:{number}", span, mention=True) for span in re.findall(r"`(dcgan [^`]+)`", line)]
    return [command for command in found if command.text.startswith("dcgan ")]


def commands_in_config(text: str, name: str) -> list[Command]:
    """The dcgan commands in a YAML file's comments."""
    lines = [(number, line.split("#", 1)[1]) for number, line in enumerate(text.splitlines(), 1) if "#" in line]
    return [Command(f"{name}:{n}", t.strip()) for n, t in _joined(lines) if t.strip().startswith("dcgan ")]


def documented() -> list[Command]:
    found = commands_in_markdown((ROOT / "README.md").read_text(), "README.md")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        found += commands_in_markdown(page.read_text(), str(page.relative_to(ROOT)))
    for config in sorted((ROOT / "configs").rglob("*.yaml")):
        found += commands_in_config(config.read_text(), str(config.relative_to(ROOT)))
    return found


def synopsis(text: str) -> bool:
    """A usage line with placeholders ([optional], a | b, ...) rather than a command to run."""
    return any(mark in text for mark in ("[", " | ", "...", "…"))


def problems_of(command: Command) -> list[str]:
    """What is wrong with one documented command: [] when it holds."""
    try:
        words = shlex.split(command.text, comments=True)
    except ValueError as error:
        return [f"not a shell command ({error})"]
    name = words[1] if len(words) > 1 else ""
    sub = main.commands.get(name)
    if sub is None:
        return [f"no subcommand {name!r}"]
    if command.refused:
        return []
    if command.mention or synopsis(command.text):
        return _names(sub, words[2:])
    args = words[2:]
    cut = next((k for k, word in enumerate(args) if word in SHELL_OPERATORS), len(args))
    return _parsed(sub, name, args[:cut])


def _names(sub: click.Command, words: list[str]) -> list[str]:
    """The names a mention or synopsis uses: its options, its --set keys, the repository's files."""
    words = [word.strip("[]|") for word in words]
    options = {option for param in sub.params for option in (*param.opts, *param.secondary_opts)}
    problems = [f"no option {word.split('=')[0]} on dcgan {sub.name}" for word in words
                if word.startswith("--") and word.split("=")[0] not in options]
    keys = set(flatten(Config()))
    problems += [f"--set {after}: no such key" for before, after in zip(words, words[1:])
                 if before == "--set" and "=" in after and after.split("=")[0] not in keys
                 and not after.split("=")[0].isupper()]  # KEY=VALUE, a placeholder
    return problems + _missing_files(words)


def _missing_files(words: list[str]) -> list[str]:
    return [f"no such file in the repository: {word}" for word in words
            if REPOSITORY_PATH.match(word.split("=", 1)[-1]) and "*" not in word
            and not (ROOT / word.split("=", 1)[-1]).exists()]


def _parsed(sub: click.Command, name: str, args: list[str]) -> list[str]:
    """A runnable command's problems: click's parse of its options, then its --set overrides against the config it
    names (the repository's file, else the defaults), then the repository's files it names."""
    try:
        with sub.make_context(f"dcgan {name}", list(args), resilient_parsing=False) as context:
            params = context.params
    except click.exceptions.Exit:
        return []  # --help
    except click.ClickException as error:
        return [error.format_message()]
    problems = _missing_files(args)
    config = params.get("config_path")
    base = ROOT / config if config is not None and (ROOT / config).is_file() else None
    try:
        load_config(base, list(params.get("overrides") or ()))
    except ConfigError as error:
        problems += [p for p in error.problems if base is not None or not p.startswith("data.path: required")]
    return problems


COMMANDS = documented()


def test_the_documents_hold_commands_to_check():
    sources = {c.where.split(":")[0] for c in COMMANDS}
    assert len(COMMANDS) > 50 and sources >= {"README.md", "docs/quickstart.md", "configs/cifar10.yaml"}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_a_documented_command_parses(command):
    assert problems_of(command) == [], command.text


def test_a_misspelt_key_an_unknown_option_and_a_missing_file_are_caught():
    page = """Train:

```
dcgan train --config configs/digits.yaml --set hacks.batchnorm=false
```

or `dcgan sample --checkpoint runs/digits --count 9`, or `dcgan train --config configs/nonesuch.yaml`.
"""
    misspelt, unknown, missing = commands_in_markdown(page, "page.md")
    assert any("hacks.batchnorm" in p for p in problems_of(misspelt)), problems_of(misspelt)
    assert any("--count" in p for p in problems_of(unknown)), problems_of(unknown)
    assert any("configs/nonesuch.yaml" in p for p in problems_of(missing)), problems_of(missing)
    config = "# Train:\n#   dcgan train --config configs/digits.yaml \\\n#     --set train.stepz=10\nmodel: {}\n"
    (joined,) = commands_in_config(config, "x.yaml")
    assert any("train.stepz" in p for p in problems_of(joined))
