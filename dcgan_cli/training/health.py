"""The monitor inside the training loop: its state across resumes and rollbacks, the probe it reads the models
with, what a trip does (monitor.action), and the rollback to a healthy checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from dcgan_cli.nets import hacks
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.config import Config
from dcgan_cli.nets.models import Classes, Models
from dcgan_cli.training.monitor import Monitor, Trip, rollbacks
from dcgan_cli.training.plots import read_metrics
from dcgan_cli.training.probes import Probe
from dcgan_cli.training.runlog import RunLog


class Health:
    """The run's monitor (its state rebuilt from the metrics logged up to the start), the probe it reads G and D
    with every monitor.check_every steps, and the rollbacks made so far."""

    def __init__(self, cfg: Config, real_images: np.ndarray, sample_latents: np.ndarray, log: RunLog, *,
                 start: int, classes: Classes | None = None, real_labels: np.ndarray | None = None,
                 held_out: tuple | None = None):
        self.cfg, self.log = cfg, log
        self.probe = (Probe(cfg, real_images, sample_latents, classes=classes, real_labels=real_labels,
                            held_out=held_out) if cfg.monitor.check_every else None)
        self.restart(start)

    def restart(self, start: int) -> None:
        self.monitor = Monitor(self.cfg.monitor, fake_floor=hacks.fake_label_mean(self.cfg.hacks))
        self.monitor.replay([r for r in read_metrics(self.log.run_dir) if r["step"] <= start])
        self.rollbacks = rollbacks(self.log.events)

    def probing(self, step: int) -> bool:
        return self.probe is not None and step % self.cfg.monitor.check_every == 0

    def action(self, trip: Trip, run_dir: Path) -> tuple[str, Path | None, str]:
        """What to do about a trip: the action, the checkpoint to roll back to, and why a rollback turned into a
        stop ("" when it did not)."""
        c = self.cfg.monitor
        if c.action != "rollback":
            return c.action, None, ""
        if self.rollbacks >= c.max_rollbacks:
            return "stop", None, f"{self.rollbacks} of monitor.max_rollbacks={c.max_rollbacks} rollbacks used"
        healthy = [p for p in checkpoint.complete(run_dir) if checkpoint.read_state(p)["step"] < trip.since]
        if not healthy:
            return "stop", None, f"no checkpoint from before step {trip.since} to roll back to"
        return "rollback", healthy[-1], ""

    def report(self, trip: Trip, action: str, why: str) -> None:
        """One line on stderr and an events.jsonl entry."""
        entry = trip.event(action)
        if why:
            entry["note"] = why
        self.log.event(entry)
        tqdm.write(f"monitor: {trip.rule} at step {trip.step}: {trip.message}; action: {action}"
                   + (f" ({why})" if why else ""), file=sys.stderr)


class RollBack(Exception):
    """Raised inside the loop to restart it from a healthy checkpoint."""

    def __init__(self, trip: Trip, target: Path):
        super().__init__(f"roll back to {target}")
        self.trip, self.target = trip, target


def rollback_seed(seed: int, rollback: int) -> int:
    """The step draws' seed after the `rollback`-th rollback: a fresh stream, so the replayed steps do not meet
    the same draws that led to the trip."""
    return int(np.random.SeedSequence([seed, rollback]).generate_state(1)[0])


def roll_back(cfg: Config, models: Models, request: RollBack, health: Health, *, run_dir: Path,
               count: int) -> tuple[int, draws.Draws, Path]:
    """Restore the healthy checkpoint bit for bit, multiply D's learning rate by monitor.rollback_lr_factor, draw
    the following steps from a fresh stream, drop the abandoned checkpoints and logs, and write the checkpoint
    again with that new state, so a crash from here on resumes after the rollback. Returns (step, draws,
    checkpoint)."""
    restored = checkpoint.restore(request.target, models, cfg)
    optimizer = models.d.optimizer
    learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * cfg.monitor.rollback_lr_factor
    optimizer.learning_rate = learning_rate
    health.rollbacks += 1
    seed = rollback_seed(restored.draws.seed, health.rollbacks)
    checkpoint.remove_after(run_dir, restored.step)
    health.log.restart(restored.step)
    health.log.event({"event": "rollback", "step": request.trip.step, "rule": request.trip.rule,
                      "to": request.target.name, "to_step": restored.step, "d_learning_rate": learning_rate,
                      "draw_seed": seed, "rollbacks": health.rollbacks})
    tqdm.write(f"monitor: rolled back from step {request.trip.step} to {request.target} "
               f"(rollback {health.rollbacks} of {cfg.monitor.max_rollbacks}); D's learning rate now "
               f"{learning_rate:.3g}", file=sys.stderr)
    path = checkpoint.save(run_dir, step=restored.step, models=models, cfg=cfg,
                           draws=draws.DrawState(seed, restored.step), sample_latents=restored.sample_latents,
                           name=request.target.name, events=len(health.log.events))
    health.restart(restored.step)
    return restored.step, draws.Draws(cfg, count=count, seed=seed, classes=models.classes), path
