"""`dcgan report RUN`: a run's plots drawn again from its logs, and a one-screen summary of how it went."""

from __future__ import annotations

from pathlib import Path

from dcgan_cli.training import plots
from dcgan_cli.config import Config, ConfigError, load_config
from dcgan_cli.evaluate.features import PRIMARY, SCORE_NAMES, coverage
from dcgan_cli.training.monitor import read_events


PRECISION = {"off": "float32", "bfloat16": "mixed bfloat16", "float16": "mixed float16",
             "auto": "auto precision"}  # train.mixed_precision in words ("auto": a run from before it was resolved)


class ReportError(ValueError):
    """A directory that holds no run to report on."""


def load_run(run_dir: Path) -> Config:
    """The run's config (config.yaml), after checking that `run_dir` is a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ReportError(f"not a run directory (no config.yaml; dcgan train writes one). Received: {str(run_dir)!r}")
    try:
        return load_config(run_dir / "config.yaml", saved=True)
    except ConfigError as error:
        raise ReportError(f"the run's config.yaml is unusable ({error.problems[0]}). "
                          f"Received: {str(run_dir)!r}") from None


def redraw(run_dir: Path, cfg: Config) -> list[Path]:
    """losses.png and progress.gif drawn again from the run's logs and grids; the files written."""
    events = read_events(run_dir)
    written = [plots.save_losses(run_dir, events, cfg),
               plots.save_progress(run_dir)]
    return [path for path in written if path is not None]


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def summary(run_dir: Path, cfg: Config) -> list[str]:
    """The run in a few lines: steps, wall time, images/s, final losses, best score and its step, monitor events."""
    run_dir = Path(run_dir)
    records = plots.read_metrics(run_dir)
    logs = [r for r in records if "g_loss" in r]
    last = records[-1]["step"] if records else 0
    lines = [f"run {run_dir}: {cfg.data.name} {cfg.model.image_size}x{cfg.model.image_size}, "
             f"{cfg.train.loop} loop, {PRECISION[cfg.train.mixed_precision]}, batch {cfg.train.batch_size}, "
             f"seed {cfg.train.seed}",
             f"  steps        {last:,} of {cfg.train.steps:,}" + ("" if last >= cfg.train.steps else " (unfinished)")]
    if records:
        wall = records[-1].get("wall_s", 0.0)
        rate = sum(r["images_per_s"] for r in logs) / len(logs) if logs else 0.0
        overall = last * cfg.train.batch_size / wall if wall else 0.0
        lines.append(f"  wall time    {_duration(wall)}; {rate:,.0f} images/s while training, {overall:,.0f} "
                     "overall (grids, scores, checkpoints included)")
    if logs:
        f = logs[-1]
        lines.append(f"  final losses (the {cfg.output.log_every} steps to {f['step']:,}): D real "
                     f"{f['d_loss_real']:.3f}, D fake {f['d_loss_fake']:.3f}, G {f['g_loss']:.3f}; "
                     f"D(x) {f['d_real_mean']:.2f}, D(G(z)) {f['d_fake_mean']:.2f}"
                     + (f"; G's gradient norm {f['g_grad_norm']:.3g}" if "g_grad_norm" in f else ""))
    lines.append("  best score   " + _best(run_dir, records))
    probes = [r for r in records if "probe" in r]
    if probes:
        p = probes[-1]["probe"]
        lines.append(f"  last probe   step {probes[-1]['step']:,}: samples' diversity {p['diversity']:.2f} of the "
                     f"real images'; gradient norms D {p['d_grad_norm']:.3g}, G {p['g_grad_norm']:.3g}")
    lines += _events(read_events(run_dir))
    return lines


def _best(run_dir: Path, records: list[dict]) -> str:
    """The best score and its step, from the scores logged during training (the last one marked best
    is what checkpoints/best holds)."""
    best = [r for r in records if r.get("eval", {}).get("best")]
    if not best:
        return "none (output.eval_every: 0 scores nothing during training; dcgan evaluate scores a checkpoint)"
    record, kept = best[-1], Path(run_dir) / "checkpoints" / "best"
    scores, space = record["eval"], record["eval"].get("features", "domain")
    key, covered = PRIMARY[space], coverage(scores)
    return (f"{SCORE_NAMES[key][0]} ({space}) {scores[key]:.4g} at step {record['step']:,}"
            + (f", {covered}" if covered else "") + (f" ({kept})" if kept.is_dir() else ""))


def _events(events: list[dict]) -> list[str]:
    if not events:
        return ["  monitor      no events"]
    lines = [f"  monitor      {len(events)} events:"]
    for e in events:
        if e.get("event") == "rollback":
            lines.append(f"    step {e['step']:,}  rollback to {e['to']}, D's learning rate now "
                         f"{e['d_learning_rate']:.3g}")
        else:
            lines.append(f"    step {e['step']:,}  {e['rule']} ({e['action']}): {e['message']}")
    return lines
