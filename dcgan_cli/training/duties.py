"""The steps of a run as DCGAN's loop reads: per step, update D on real and fake images and G through a frozen D
(training/steps.py, run by either loop of training/loops.py), then the step's duties (read the losses, log,
score, probe, draw the grid, checkpoint) and the ways a run ends early (pruned, monitor, signal), each a method of
`Steps`."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dcgan_cli import images
from dcgan_cli.config import Config
from dcgan_cli.nets.ema import calibrate_ema
from dcgan_cli.nets.models import Models
from dcgan_cli.signals import StopRequest
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.training.health import Health, RollBack
from dcgan_cli.training.loops import CompiledLoop, SplitLoop
from dcgan_cli.training.runlog import RunLog
from dcgan_cli.training.upkeep import (
    BestKeeper,
    Diverged,
    Interrupted,
    MonitorStopped,
    Pruned,
    Window,
    diverged,
    due,
    postfix,
    sample_grid,
    writing,
)


@dataclass(frozen=True)
class Duties:
    """What a step does besides its updates, from the output cadences (and a pending stop, which saves)."""

    logged: bool
    saving: bool
    evaluating: bool
    probing: bool
    sampling: bool

    @property
    def reads_sums(self) -> bool:
        return self.logged or self.saving or self.evaluating

    @property
    def syncs(self) -> bool:
        return self.sampling or self.saving or self.evaluating or self.probing


class Steps:
    """Steps start+1 .. train.steps of one loop (until a rollback builds the next): the updates, then the duties,
    keeping the last complete checkpoint that every error names."""

    def __init__(self, cfg: Config, models: Models, loop: SplitLoop | CompiledLoop, step_draws: draws.Draws,
                 sample_latents: np.ndarray, *, run_dir: Path, start: int, resumed_from: Path | None,
                 keeper: BestKeeper | None, log: RunLog, health: Health):
        self.cfg, self.models, self.loop, self.step_draws = cfg, models, loop, step_draws
        self.sample_latents, self.run_dir, self.start, self.resumed_from = sample_latents, run_dir, start, resumed_from
        self.keeper, self.log, self.health = keeper, log, health
        self.last_saved, self.saved_step, self.read_step = resumed_from, start, start
        self.window = Window()

    def run(self) -> None:
        """The loop of DCGAN training with its duties; returns after the last step, raises on an early end."""
        steps = self.cfg.train.steps
        with StopRequest() as stop, \
                tqdm(total=steps, initial=self.start, unit="step", desc="train", disable=not self.cfg.output.progress,
                     dynamic_ncols=True) as bar:
            for step in range(self.start + 1, steps + 1):
                self.loop.step(step)  # (1) D on real and fake images, (2) G through a frozen D
                bar.update(1)
                duties = self.duties(step, stopping=bool(stop.signum))
                if self.loop.reads_every_step or duties.reads_sums:
                    self.read_losses(step)
                if duties.syncs:
                    self.sync(duties)
                scored, new_best = self.keeper(self.models, step=step) if duties.evaluating else (None, None)
                record = self.record(step, duties, scored, bar)
                actions = self.observe(record)
                if duties.sampling:
                    self.draw_grid(step)
                self.checkpoint(step, duties, new_best)
                if scored:
                    self.judge(step, scored)
                self.act(step, actions)
                if stop.signum:
                    self.interrupted(step, stop.signum)

    def duties(self, step: int, *, stopping: bool) -> Duties:
        out, steps = self.cfg.output, self.cfg.train.steps
        return Duties(logged=due(step, out.log_every, steps),
                      saving=due(step, out.checkpoint_every, steps) or (stopping and self.saved_step != step),
                      evaluating=self.keeper is not None and due(step, out.eval_every, steps),
                      probing=self.health.probing(step), sampling=due(step, out.sample_every, steps))

    def read_losses(self, step: int) -> None:
        """The loop's sums since the last read into the window; a NaN or infinity among them ends the steps."""
        sums = self.loop.take_sums()
        bad = {key: value for key, value in sums.items() if not np.isfinite(value)}
        if bad:
            raise self.non_finite(step, self.read_step + 1, bad, ", ".join(f"{k}={v}" for k, v in bad.items()))
        steps = step - self.read_step
        self.window.add(sums, steps=steps, images=steps * self.cfg.train.batch_size)
        self.read_step = step

    def sync(self, duties: Duties) -> None:
        """The host's copy of the weights (the compiled loop keeps them on the device), EMA's BN statistics too."""
        self.loop.sync()
        if self.models.g_ema is not None and (duties.sampling or duties.saving or duties.evaluating):
            calibrate_ema(self.models.g_ema, self.cfg, self.models.classes)

    def record(self, step: int, duties: Duties, scored: dict | None, bar: tqdm) -> dict:
        """The step's metrics.jsonl entry (means, score, probe), written when it has any, and the bar's detail."""
        record = {"step": step}
        if duties.logged:
            means = self.window.means()
            bar.set_postfix_str(postfix(means, self.cfg) + (self.keeper.note if self.keeper else ""), refresh=False)
            record.update(means, precision=self.cfg.train.mixed_precision)  # what images_per_s was measured in
            self.window.reset()
        if scored:
            record["eval"] = scored
        if duties.probing:
            record["probe"] = self.health.probe(self.models)
        if duties.logged or duties.evaluating or duties.probing:
            with writing(self.log.metrics, self.last_saved):
                self.log.record(record)
        return record

    def observe(self, record: dict) -> list[tuple]:
        """The monitor's trips on this record with their actions, reported before the step's checkpoint (which
        counts them, so a resume from it keeps them); acted on after it."""
        actions = [(trip, *self.health.action(trip, self.run_dir)) for trip in self.health.monitor.observe(record)]
        with writing(self.log.events_path, self.last_saved):
            for trip, action, _, why in actions:
                self.health.report(trip, action, why)
        return actions

    def draw_grid(self, step: int) -> None:
        """samples/step_N.png, written before the step's checkpoint so that a resumed run never misses one."""
        grid_path = self.run_dir / "samples" / f"step_{step:06d}.png"
        with writing(grid_path, self.last_saved):
            picture = sample_grid(self.models, self.sample_latents, self.cfg)
            images.save_png(picture, grid_path)
            self.log.grid(step, picture)

    def checkpoint(self, step: int, duties: Duties, new_best: dict | None) -> None:
        """The cadence's checkpoint and checkpoints/best when the score improved, never of non-finite weights."""
        if (duties.saving or new_best) and not checkpoint.all_finite(self.models):
            raise self.non_finite(step, step, {"weights": "nan or inf"},
                                  "a weight or optimizer variable is NaN or infinite")
        if duties.saving:
            self.save(step)
        if new_best:
            with writing(self.run_dir / checkpoint.CHECKPOINTS / checkpoint.BEST, self.last_saved):
                checkpoint.save(self.run_dir, step=step, models=self.models, cfg=self.cfg,
                                draws=self.step_draws.state(step), sample_latents=self.sample_latents,
                                name=checkpoint.BEST, score=new_best, events=len(self.log.events))

    def save(self, step: int) -> None:
        with writing(self.run_dir / checkpoint.CHECKPOINTS / f"step_{step:06d}", self.last_saved):
            self.last_saved = checkpoint.save(self.run_dir, step=step, models=self.models, cfg=self.cfg,
                                              draws=self.step_draws.state(step), sample_latents=self.sample_latents,
                                              events=len(self.log.events))
            checkpoint.prune(self.run_dir, keep=self.cfg.output.keep_checkpoints, protect=self.resumed_from)
        self.saved_step = step

    def judge(self, step: int, scored: dict) -> None:
        """The judge (a tuning study's pruner) may stop the run after a score; the last score is seen too."""
        steps = self.cfg.train.steps
        if self.keeper.stops(step, scored) and step < steps:
            self.finish(step)
            raise Pruned(f"pruned at step {step} of {steps}; checkpoint {self.last_saved}")

    def act(self, step: int, actions: list[tuple]) -> None:
        """The monitor's actions: roll back to a checkpoint, or stop after one."""
        for trip, action, target, _ in actions:
            if action == "rollback":
                raise RollBack(trip, target)
            if action == "stop":
                self.finish(step)
                raise MonitorStopped(f"monitor: stopped at step {step} of {self.cfg.train.steps} by the {trip.rule} "
                                     f"rule; checkpoint {self.last_saved}. See {self.log.events_path}; resume with: "
                                     f"dcgan train --resume --run-dir {self.run_dir}")

    def interrupted(self, step: int, signum: int) -> None:
        """SIGINT or SIGTERM: the step's checkpoint is written (Duties.saving), the log closed."""
        with writing(self.run_dir, self.last_saved):
            self.log.finish()
        raise Interrupted(f"stopped by {signal.Signals(signum).name} at step {step} of {self.cfg.train.steps}; "
                          f"checkpoint {self.last_saved}. Resume with: dcgan train --resume --run-dir {self.run_dir}",
                          signum)

    def finish(self, step: int) -> None:
        """Before an early end: a checkpoint of this step if it has none, and the log closed."""
        if self.saved_step != step:
            self.save(step)
        with writing(self.run_dir, self.last_saved):
            self.log.finish()

    def non_finite(self, step: int, since: int, values: dict, what: str) -> Diverged:
        """A NaN or infinity: an event, then a rollback where monitor.action allows one, else Diverged."""
        trip = self.health.monitor.non_finite(step, since, values)
        action, target, why = self.health.action(trip, self.run_dir)
        self.health.report(trip, "rollback" if action == "rollback" else "stop", why)
        if target is not None:
            raise RollBack(trip, target)
        where = f"step {step}" if since == step else f"steps {since}..{step}"
        return diverged(where, what, self.last_saved)
