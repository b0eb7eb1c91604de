"""Checkpoints: everything a run needs to continue exactly, written whole or not at all.

`run_dir/checkpoints/step_NNNNNN/` holds:

    weights.npz         G's and D's variables (BatchNorm moving statistics included) and both optimizers'
                        (iteration counts, learning rates, Adam moments), as arrays g/0000, d/0000, g_optimizer/0000,
                        d_optimizer/0000, ... in each model's variable order, and with train.ema_decay the
                        moving average of G's variables as g_ema/0000, ...
    sample_latents.npy  the fixed latent batch of the sample grids
    state.json          the step, the step draws' generator state (seed, step), the architecture hash, each
                        variable's path and shape, and how many monitor events the run had recorded
    config.yaml         the resolved config
    COMPLETE            written last: marks the checkpoint whole

It is written into `checkpoints/.tmp-step_NNNNNN/`, every file flushed to disk, then renamed into place, so a crash
at any moment leaves either no checkpoint or a whole one. `checkpoints/best/` (output.eval_every) is the same kind
of checkpoint under a fixed name, with its score in state.json; it is replaced by moving the old one aside first
(`.old-best/`), so a crash between the two renames leaves the old one to be moved back at the next start. It is
never pruned and never resumed from. A checkpoint is deleted (pruned, or abandoned by a rollback) by renaming it to
`.tmp-gone-step_NNNNNN/` first, so a crash halfway through the deletion never leaves a COMPLETE one with files
missing. Everything is written through Python file objects, so a full disk is an
ordinary OSError (h5py, behind Keras' .weights.h5, crashes the process when a write fails). Nothing here
unpickles or runs code from a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from dcgan_cli import config as config_module
from dcgan_cli.config import ARCHITECTURE, CONDITIONAL_ARCHITECTURE, HASHED_OFF_DEFAULT, Config, ConfigError
from dcgan_cli.state.draws import DrawState
from dcgan_cli.files import fsync, one_line
from dcgan_cli.nets.gradients import gradient_norm
from dcgan_cli.nets.models import Classes, Models, build_generator, build_optimizers, saved_variables

CHECKPOINTS = "checkpoints"
BEST = "best"
EMA = "g_ema"  # the weights.npz group of the moving average of G's variables
REPLAY = "replay"  # ... and of hack 22's buffer of past fakes
ADAPTIVE = "adaptive"  # ... and of hack 23's augmentation strength and hack 24's averages
MARKER = "COMPLETE"
FORMAT = 3  # 3: D ends in its raw score and G's optimizer keeps its gradient norm (gradients.keeping_gradient_norm);
#            2: D of the cross-entropy ended in a sigmoid (no weights) and the step draws came from the device; 1
#            kept a host state for the draws
LOGITS = 3  # the first format of D's losses on its raw score
_NAME = re.compile(r"^step_(\d{6,})$")
_TEMPORARY = ".tmp-"
_REPLACED = ".old-"
_GONE = f"{_TEMPORARY}gone-"  # a checkpoint being deleted: a temporary, removed at the next start


class CheckpointError(ValueError):
    """A path that is not a usable checkpoint or run directory, or a checkpoint that does not fit."""


@dataclass(frozen=True)
class Restored:
    """What a checkpoint gives back besides the weights: where the loop stands and its random state."""

    path: Path
    step: int
    draws: DrawState
    sample_latents: np.ndarray
    events: int | None  # how many lines events.jsonl had when it was written (None: written before the monitor)
    format: int = FORMAT  # below LOGITS: its D ended in a sigmoid, its losses were on D's probabilities


def architecture_hash(cfg: Config) -> str:
    """A short hash of the config values that fix the networks' layers and weight shapes."""
    flat = config_module.flatten(cfg)
    keys = [key for key in ARCHITECTURE if flat[key] != HASHED_OFF_DEFAULT.get(key)]
    keys += CONDITIONAL_ARCHITECTURE if cfg.hacks.class_conditional else ()
    return hashlib.sha256(json.dumps({key: flat[key] for key in keys}).encode()).hexdigest()[:16]


def all_finite(models: Models) -> bool:
    """Whether every weight, moving statistic and optimizer variable of G and D is finite."""
    variables = [v for group in _groups(models).values() for v in group]
    return all(np.isfinite(v.numpy()).all() for v in variables)


def _groups(models: Models) -> dict[str, list]:
    """The variables a checkpoint holds, by group, in a fixed order (optimizers built first)."""
    build_optimizers(models)
    groups = {"g": saved_variables(models.g), "d": models.d.weights,
              "g_optimizer": models.gan.optimizer.variables, "d_optimizer": models.d.optimizer.variables}
    if models.g_ema is not None:
        groups[EMA] = saved_variables(models.g_ema)
    if models.replay is not None:  # hack 22: the past fakes, so a resume replays what the whole run would
        groups[REPLAY] = models.replay.variables
    if models.adaptive is not None:  # hacks 23 and 24: the strength p and LeCam's averages go on where they were
        groups[ADAPTIVE] = models.adaptive.variables
    return groups


def save(run_dir: Path, *, step: int, models: Models, cfg: Config, draws: DrawState,
         sample_latents: np.ndarray, name: str | None = None, score: dict | None = None,
         events: int | None = None) -> Path:
    """Write the checkpoint of `step` atomically as checkpoints/step_NNNNNN (or checkpoints/`name`, replacing one
    there), with `score` and the count of the run's monitor `events` so far recorded in its state.json, and return
    its directory."""
    parent = Path(run_dir) / CHECKPOINTS
    final = parent / (name or f"step_{step:06d}")
    temporary = parent / f"{_TEMPORARY}{final.name}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    try:
        groups = _groups(models)
        with open(temporary / "weights.npz", "wb") as file:
            np.savez(file, **{f"{group}/{i:04d}": v.numpy() for group, variables in groups.items()
                              for i, v in enumerate(variables)})
        with open(temporary / "sample_latents.npy", "wb") as file:
            np.save(file, sample_latents)
        state = {"format": FORMAT, "step": step, "draws": {"seed": draws.seed, "step": draws.step},
                 "architecture": architecture_hash(cfg), "keras": keras.__version__,
                 "backend": keras.backend.backend(),
                 "variables": {group: [[v.path, list(v.shape)] for v in variables]
                               for group, variables in groups.items()}}
        if models.classes is not None:  # hack 21: what G's and D's class inputs mean
            state["classes"] = models.classes.to_json()
        if score is not None:
            state["score"] = score
        if events is not None:
            state["events"] = events
        (temporary / "state.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        (temporary / "config.yaml").write_text(config_module.to_yaml(cfg), encoding="utf-8")
        (temporary / MARKER).write_text(f"step {step}\n", encoding="utf-8")
        for file in temporary.iterdir():
            fsync(file)
        _replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def _replace(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is first moved aside and deleted only once `new` is in place."""
    aside = final.with_name(f"{_REPLACED}{final.name}")
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(new, final)
    fsync(final.parent)
    shutil.rmtree(aside, ignore_errors=True)


def remove_temporaries(run_dir: Path) -> None:
    """Delete half-written checkpoints left by a crash during a save, and put back a checkpoint that was moved
    aside to be replaced when the crash came before its replacement was in place."""
    parent = Path(run_dir) / CHECKPOINTS
    if not parent.is_dir():
        return
    for leftover in parent.glob(f"{_TEMPORARY}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for aside in parent.glob(f"{_REPLACED}*"):
        original = parent / aside.name[len(_REPLACED):]
        if original.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, original)


def best_score(run_dir: Path) -> dict | None:
    """The score recorded in checkpoints/best, or None when the run has no complete best checkpoint."""
    best = Path(run_dir) / CHECKPOINTS / BEST
    if not (best / MARKER).is_file():
        return None
    return read_state(best).get("score")


def complete(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    parent = Path(run_dir) / CHECKPOINTS
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if _NAME.match(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def prune(run_dir: Path, *, keep: int, protect: Path | None = None) -> None:
    """Delete all but the newest `keep` complete checkpoints, never `protect` (the one a run resumed from)."""
    for old in complete(run_dir)[:-keep]:
        if protect is None or old.resolve() != protect.resolve():
            _delete(old)


def remove_after(run_dir: Path, step: int) -> None:
    """Delete the complete checkpoints of steps after `step` (a rollback abandons them); best is kept."""
    for later in complete(run_dir):
        if int(_NAME.match(later.name).group(1)) > step:
            _delete(later)


def _delete(checkpoint: Path) -> None:
    """Delete a checkpoint so that no crash leaves it COMPLETE but partly gone: renamed out of the loaders' sight
    first (one atomic step), then removed."""
    gone = checkpoint.with_name(f"{_GONE}{checkpoint.name}")
    if gone.exists():  # what a failed deletion of the same name left
        shutil.rmtree(gone)
    os.replace(checkpoint, gone)
    shutil.rmtree(gone)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from a run directory (its newest complete checkpoint) or a checkpoint directory."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory. Received: {str(path)!r}")
    found = complete(path)
    if found:
        return found[-1]
    raise CheckpointError("not a complete checkpoint, nor a run directory with one (a checkpoint holds "
                          f"{MARKER} once fully written). Received: {str(path)!r}")


def read_config(checkpoint: Path) -> Config:
    """The resolved config saved in a checkpoint."""
    return config_module.load_config(Path(checkpoint) / "config.yaml", saved=True)


def read_state(checkpoint: Path) -> dict:
    try:
        return json.loads((Path(checkpoint) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read state.json ({one_line(error)}). Received: {str(checkpoint)!r}") from None


def _assign(groups: dict[str, list], checkpoint: Path, *, sources: dict[str, str] | None = None) -> None:
    """Load the saved arrays of `groups` into their variables, checking count and shapes; `sources` maps a group
    to the saved group it is read from (G from the moving average, say)."""
    try:
        with np.load(checkpoint / "weights.npz", allow_pickle=False) as saved:
            for group, variables in groups.items():
                source = (sources or {}).get(group, group)
                keys = sorted(key for key in saved.files if key.startswith(f"{source}/"))
                if len(keys) != len(variables):
                    raise ValueError(f"{len(keys)} saved {group} variables for {len(variables)} in the model")
                for variable, key in zip(variables, keys):
                    variable.assign(saved[key])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"cannot load weights.npz ({one_line(error)}). Received: {str(checkpoint)!r}") from None


def has_ema(checkpoint: Path) -> bool:
    """Whether a checkpoint holds a moving average of G's weights (train.ema_decay)."""
    return _holds(checkpoint, EMA)


def _holds(checkpoint: Path, group: str) -> bool:
    """Whether a checkpoint's weights.npz holds the variables of `group`."""
    try:
        with np.load(Path(checkpoint) / "weights.npz", allow_pickle=False) as saved:
            return any(key.startswith(f"{group}/") for key in saved.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"cannot load weights.npz ({one_line(error)}). Received: {str(checkpoint)!r}") from None


def saved_classes(checkpoint: Path) -> Classes | None:
    """The classes a class-conditional checkpoint's G and D were trained on (hack 21), else None."""
    saved = read_state(Path(checkpoint)).get("classes")
    try:
        return None if saved is None else Classes.from_json(saved)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"state.json's classes are unreadable ({one_line(error)}). "
                              f"Received: {str(checkpoint)!r}") from None


def load_generator(checkpoint: Path, *, raw: bool = False) -> tuple[Config, keras.Model]:
    """Rebuild G from a checkpoint's config and load its weights: the moving average where the checkpoint holds
    one, unless `raw` asks for the trained weights themselves."""
    try:
        cfg = read_config(checkpoint)
    except ConfigError as error:
        raise CheckpointError(f"the checkpoint's config.yaml is unusable ({error.problems[0]}). "
                              f"Received: {str(checkpoint)!r}") from None
    classes = saved_classes(checkpoint)
    if cfg.hacks.class_conditional and classes is None:
        raise CheckpointError("the checkpoint's config has hacks.class_conditional on but its state.json names no "
                              f"classes, so its G cannot be rebuilt. Received: {str(checkpoint)!r}")
    g = build_generator(cfg, np.random.default_rng(0), classes)
    _assign({"g": saved_variables(g)}, Path(checkpoint), sources={"g": EMA if has_ema(checkpoint) and not raw else "g"})
    return cfg, g


def restore(checkpoint: Path, models: Models, cfg: Config) -> Restored:
    """Load G, D and both optimizers from a checkpoint into freshly built models of the same architecture."""
    checkpoint = Path(checkpoint)
    state = read_state(checkpoint)
    written = int(state.get("format", 1))
    if written > FORMAT:
        raise CheckpointError(f"the checkpoint is of format {written}, written by a newer dcgan-cli than this one "
                              f"(format {FORMAT}); upgrade dcgan-cli to resume it. Received: {str(checkpoint)!r}")
    if state.get("architecture") != architecture_hash(cfg):
        raise CheckpointError("the checkpoint was written for another architecture than this config's. "
                              f"Received: {str(checkpoint)!r}")
    if models.classes is not None and saved_classes(checkpoint) != models.classes:
        raise CheckpointError(f"the checkpoint's classes are not the data's (now: {', '.join(models.classes.names)}"
                              f"). Received: {str(checkpoint)!r}")
    groups = _groups(models)
    averaged = EMA in groups and has_ema(checkpoint)
    # A checkpoint written without the moving average starts it from the restored G; one without hack 22's buffer
    # or hacks 23-24's state (a switch turned on for the resume) leaves them empty (p = 0, averages 0).
    optional = {name for name in (REPLAY, ADAPTIVE) if name in groups and not _holds(checkpoint, name)}
    loaded = {name: variables for name, variables in groups.items()
              if (name != EMA or averaged) and name not in optional}
    if written < LOGITS:
        # Its D's weights are this D's (the sigmoid it ended in had none; the loss applies it now); its G optimizer
        # had no gradient norm, the last of this one's variables, which starts at 0.
        assert loaded["g_optimizer"][-1] is gradient_norm(models.gan.optimizer)
        loaded["g_optimizer"] = loaded["g_optimizer"][:-1]
    _assign(loaded, checkpoint)
    if EMA in groups and not averaged:
        models.g_ema.set_weights(models.g.get_weights())
    try:
        sample_latents = np.load(checkpoint / "sample_latents.npy", allow_pickle=False)
        step = int(state["step"])
        # A format-1 checkpoint kept a host generator's state; its run goes on with the device's from there.
        saved = state.get("draws", {"seed": cfg.train.seed, "step": step})
        draws = DrawState(seed=int(saved["seed"]), step=int(saved["step"]))
        events = None if state.get("events") is None else int(state["events"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"cannot restore the loop state ({one_line(error)}). "
                              f"Received: {str(checkpoint)!r}") from None
    return Restored(path=checkpoint, step=step, draws=draws, sample_latents=sample_latents, events=events,
                    format=written)
