"""What a run writes as it goes besides its grids and checkpoints: metrics.jsonl, events.jsonl, the TensorBoard
event file (output.tensorboard), losses.png with each grid, and progress.gif at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dcgan_cli.training import plots
from dcgan_cli.config import Config
from dcgan_cli.files import write_atomically
from dcgan_cli.training.monitor import EVENTS, read_events
from dcgan_cli.training.rundir import keep_metrics_until
from dcgan_cli.training.tensorboard_log import TensorBoardWriter, scalar_tags


class RunLog:
    """The run's logs from step `start` on: later metrics lines are dropped (they are logged again), and
    events.jsonl is cut to the `events` lines the resumed checkpoint counted (None: those up to `start`)."""

    def __init__(self, run_dir: Path, cfg: Config, *, start: int, events: int | None):
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.metrics, self.events_path = self.run_dir / plots.METRICS, self.run_dir / EVENTS
        keep_metrics_until(self.metrics, start)
        kept = read_events(self.run_dir)
        kept = kept[:events] if events is not None else [e for e in kept if e["step"] <= start]
        self._rewrite_events(kept)
        self.events = kept
        earlier = [r.get("wall_s", 0.0) for r in plots.read_metrics(self.run_dir)]
        self.started = time.perf_counter() - (earlier[-1] if earlier else 0.0)
        self.tensorboard = TensorBoardWriter(self.run_dir, start=start) if cfg.output.tensorboard else None
        # What has been logged (records, events, restarts) and what losses.png last showed of it.
        self._logged, self._plotted = 0, None

    def _rewrite_events(self, kept: list[dict]) -> None:
        if self.events_path.exists() or kept:
            text = "".join(json.dumps(e) + "\n" for e in kept).encode()
            write_atomically(self.events_path, lambda file: file.write(text))

    def record(self, record: dict) -> None:
        """Append a metrics.jsonl record (with the run's wall time so far, resumes included) and log its numbers."""
        record["wall_s"] = round(time.perf_counter() - self.started, 2)
        self._logged += 1
        with open(self.metrics, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.scalars(record["step"], scalar_tags(record, adaptive=self.cfg.hacks.adaptive_augment))

    def event(self, entry: dict) -> None:
        """Append a monitor event to events.jsonl (flushed at once: it must outlive a crash)."""
        with open(self.events_path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        self.events.append(entry)
        self._logged += 1

    def grid(self, step: int, picture: np.ndarray) -> None:
        """A new sample grid: into TensorBoard, and losses.png is drawn again."""
        if self.tensorboard is not None:
            self.tensorboard.image(step, "samples", picture)
            self.tensorboard.flush()
        self.plot()

    def plot(self) -> None:
        """Draw losses.png again, unless nothing was logged since it was last drawn (the last grid of a run is
        drawn just before the run finishes)."""
        if self._plotted != self._logged:
            plots.save_losses(self.run_dir, self.events, self.cfg)
            self._plotted = self._logged

    def restart(self, step: int) -> None:
        """A rollback to `step`: later metrics lines go, TensorBoard is told to drop its later events."""
        keep_metrics_until(self.metrics, step)
        self._logged += 1
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = TensorBoardWriter(self.run_dir, start=step)

    def finish(self) -> None:
        """The end of the run (finished or stopped): losses.png and progress.gif."""
        self.plot()
        plots.save_progress(self.run_dir)
        self.close()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
