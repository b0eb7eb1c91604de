"""A run's pictures of itself: losses.png (losses, D's outputs and the monitor's probes over the steps, with the
monitor's events marked; matplotlib) and progress.gif (the fixed-latent sample grids in step order)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dcgan_cli import images
from dcgan_cli.config import Config
from dcgan_cli.evaluate.features import PRIMARY, SCORE_NAMES
from dcgan_cli.files import read_jsonl, write_atomically

LOSSES = "losses.png"
PROGRESS = "progress.gif"
METRICS = "metrics.jsonl"
RULE_COLOURS = {"collapse": "tab:red", "d_wins": "tab:purple", "g_rising": "tab:orange", "grad_norm": "tab:brown",
                "d_overfits": "tab:green", "non_finite": "black"}


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl in order."""
    return read_jsonl(Path(run_dir) / METRICS)


def _series(records: list[dict], key: str, group: str | None = None) -> tuple[list[int], list[float]]:
    rows = [(r["step"], (r.get(group) or {}).get(key) if group else r.get(key)) for r in records]
    rows = [(step, value) for step, value in rows if isinstance(value, (int, float))]
    return [step for step, _ in rows], [value for _, value in rows]


def loss_panels(records: list[dict], cfg: Config) -> list[tuple[str, list]]:
    """losses.png's panels for a run's records: (y label, [(key, record group or None, legend)]), one per quantity
    the run measures; a switch that is off (hack 23, data.holdout) adds none, nor a flat line."""
    panels = [("loss", [("d_loss_real", None, "D real"), ("d_loss_fake", None, "D fake"), ("g_loss", None, "G")]),
              ("D's mean output", [("d_real_mean", None, "D(x)"), ("d_fake_mean", None, "D(G(z))")])]
    if any("g_grad_norm" in r for r in records):
        panels.append(("G's gradient norm", [("g_grad_norm", None, "global L2 norm, per log")]))
    lines = []
    if cfg.hacks.adaptive_augment:
        lines += [("d_real_sign", None, "r_t: mean sign of D's score on reals"),
                  ("augment_p", None, "augmentation strength p")]
    if any("d_holdout_gap" in r.get("probe", {}) for r in records):
        lines.append(("d_holdout_gap", "probe", "D(training) - D(held out)"))
    if lines:
        panels.append(("overfitting, augmentation", lines))
    if any("probe" in r for r in records):
        panels.append(("samples' diversity\n(share of real)", [("diversity", "probe", "diversity")]))
    scored = [r["eval"] for r in records if "eval" in r]
    if scored:
        space = scored[-1].get("features", "domain")
        name, short = SCORE_NAMES[PRIMARY[space]]
        panels.append((f"{name}\n({space})", [(PRIMARY[space], "eval", short)]))
    return panels


def save_losses(run_dir: Path, events: list[dict], cfg: Config) -> Path | None:
    """Write RUN/losses.png from its metrics and `events`: D's losses on real and fake images and G's, D's mean
    outputs, G's gradient norm, with hack 23 its r_t and strength p, with data.holdout D's output gap, and (when
    probed or scored) the samples' diversity and the training-time score; None when nothing was logged yet. What
    `cfg` turns off gets no line and no panel."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    records = read_metrics(run_dir)
    if not any("g_loss" in r for r in records):
        return None
    panels = loss_panels(records, cfg)
    height = 2.4 * len(panels) + 0.6
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, height), sharex=True, squeeze=False)
    # Fixed margins, in inches: tight_layout measured every label again at each redraw (a third of its time).
    figure.subplots_adjust(left=0.13, right=0.98, bottom=0.5 / height, top=1 - 0.35 / height, hspace=0.12)
    for ax, (label, lines) in zip(axes[:, 0], panels):
        for key, group, name in lines:
            steps, values = _series(records, key, group)
            ax.plot(steps, values, label=name, linewidth=1.2, marker="." if group else None)
        if lines[0][0] == "diversity":
            ax.axhline(cfg.monitor.collapse_diversity, color="tab:red", linestyle=":", linewidth=1,
                       label="collapse below")
        if lines[0][0] == "g_grad_norm":
            log_scale(ax, _series(records, "g_grad_norm")[1])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    _mark_events(axes[:, 0], events)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(f"{Path(run_dir).name}: training curves" + (f", {len(events)} monitor events" if events
                                                                          else ", no monitor events"))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomically(Path(run_dir) / LOSSES, lambda file: file.write(buffer.getvalue()))


def log_scale(ax, values: list[float]) -> None:
    """A logarithmic y axis for gradient norms; where one is exactly 0 (a G that gets no gradient), logarithmic
    above 1e-4 and linear below, down to 0, so the 0 shows."""
    if values and min(values) <= 0:
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylim(bottom=0)
    else:
        ax.set_yscale("log")


def _mark_events(axes, events: list[dict]) -> None:
    """A dashed line at each trip's step (coloured by rule), a dotted one at each rollback, labelled on top."""
    for event in events:
        rollback = event.get("event") == "rollback"
        colour = "tab:green" if rollback else RULE_COLOURS.get(event.get("rule"), "tab:gray")
        for ax in axes:
            ax.axvline(event["step"], color=colour, linestyle=":" if rollback else "--", linewidth=1.2)
        text = f"rollback to {event['to_step']}" if rollback else event.get("rule", "")
        axes[0].annotate(text, (event["step"], 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                         color=colour, ha="right", va="top")


def save_progress(run_dir: Path, *, duration_ms: int = 400) -> Path | None:
    """Write RUN/progress.gif from the sample grids (samples/step_*.png), each frame captioned with its step;
    None when there is no grid."""
    grids = sorted((Path(run_dir) / "samples").glob("step_*.png"))
    if not grids:
        return None
    frames = []
    for path in grids:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        caption = Image.new("RGB", (picture.width, 18), (255, 255, 255))
        ImageDraw.Draw(caption).text((4, 3), f"step {int(path.stem.removeprefix('step_')):,}", fill=(0, 0, 0))
        framed = Image.new("RGB", (picture.width, picture.height + caption.height))
        framed.paste(caption, (0, 0))
        framed.paste(picture, (0, caption.height))
        frames.append(np.asarray(framed))
    return images.save_gif(frames, Path(run_dir) / PROGRESS, duration_ms=duration_ms)
