"""Choosing the run directory: a new one for a new run, the existing one (and its checkpoint) for a resume."""

from __future__ import annotations

import json
from pathlib import Path

from dcgan_cli.state import checkpoint
from dcgan_cli.config import ARCHITECTURE, Config, differences, load_config
from dcgan_cli.files import write_atomically


class RunDirError(ValueError):
    """A run directory that cannot be used as asked without losing or mixing up a run."""


def choose_new(cfg: Config, *, config_name: str, explicit: str | Path | None = None) -> Path:
    """The run directory of a new run: `explicit`, else output.run_dir (either must be new or empty), else a
    fresh runs/<config_name>, runs/<config_name>-2, ..."""
    chosen = explicit if explicit is not None else cfg.output.run_dir
    if chosen is None:
        path, number = Path("runs") / config_name, 1
        while path.exists():
            number += 1
            path = Path("runs") / f"{config_name}-{number}"
        return path
    path = Path(chosen)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"the run directory is a file. Received: {str(path)!r}")
    if path.exists() and any(path.iterdir()):
        found = checkpoint.complete(path)
        if found:
            raise RunDirError(f"the run directory already holds a run (newest checkpoint {found[-1].name}); "
                              f"continue it with --resume, or choose a new --run-dir. Received: {str(path)!r}")
        raise RunDirError("the run directory already holds files; choose a new one so no run is overwritten. "
                          f"Received: {str(path)!r}")
    return path


def for_resume(cfg: Config | None, overrides: tuple[str, ...], *, config_name: str | None,
               explicit: str | Path | None) -> tuple[Path, Config, list[str]]:
    """The run directory to resume, the config to continue with, and notes on what changed since the checkpoint.

    Without a config file the checkpoint's own config is used, with `overrides` on top. A changed architecture is
    refused; other changes (train.steps, say) are allowed and listed.
    """
    if explicit is not None:
        path = Path(explicit)
    elif cfg is not None and cfg.output.run_dir is not None:
        path = Path(cfg.output.run_dir)
    else:
        path = Path("runs") / str(config_name)
    if not path.is_dir():
        raise RunDirError(f"nothing to resume: no such run directory. Received: {str(path)!r}")
    found = checkpoint.complete(path)
    saved_path = found[-1] / "config.yaml" if found else path / "config.yaml"
    if not saved_path.is_file():
        raise RunDirError(f"nothing to resume: the run directory holds no run (no config.yaml, no checkpoint). "
                          f"Received: {str(path)!r}")
    saved = load_config(saved_path, saved=True)
    new = cfg if cfg is not None else load_config(saved_path, overrides, saved=True)
    since = found[-1].name if found else "the run's start"
    changed = differences(saved, new, ignore=("output.run_dir",))
    refused = [f"{key}: {old!r} -> {value!r}" for key, old, value in changed if key in ARCHITECTURE]
    if refused:
        raise RunDirError(f"cannot resume from {since} with another architecture ({'; '.join(refused)}); "
                          f"undo these changes or start a new run. Received: {str(path)!r}")
    notes = [f"changed since {since}: {key}: {old!r} -> {value!r}" for key, old, value in changed]
    if not found:
        notes.append("no complete checkpoint yet: training again from step 0")
    elif int(found[-1].name.removeprefix("step_")) >= new.train.steps:
        notes.append(f"the run already reached {found[-1].name} of {new.train.steps} steps; "
                     "raise train.steps (--set train.steps=N) to train further")
    return path, new, notes


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop metrics lines logged after `step` (a resumed run logs those steps again); atomic rewrite."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _logged_step(line) <= step]
    write_atomically(path, lambda file: file.write("".join(line + "\n" for line in kept).encode()))


def _logged_step(line: str) -> float:
    """The step of one metrics line; infinity for a line a crash cut short, so that it is dropped."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
