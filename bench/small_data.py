"""The score over training steps of a small-data study's runs (docs/measurements.md: Small folders).

    python bench/small_data.py STUDY [--n 1000] [--set data.limit=null] [--out small-data.png]
    python bench/small_data.py --gap RUN [RUN ...] [--out gap.png]

STUDY is a `dcgan ablate` directory whose runs kept their checkpoints (configs/ablate-small-folder.yaml keeps one
every 500 steps). Every kept checkpoint of every finished run is scored with `dcgan evaluate`'s code, against the
data the --set overrides name (by default data.limit=null: the whole folder a subset was drawn from, the real
distribution rather than the training images), in the features the study scored in. It writes a CSV of every score
and a plot of each variant's mean FD over steps with its runs' range, and prints the table.

--gap plots what the monitor probed in runs trained with data.holdout: D's mean output on training images minus
that on the held-out real images, with the augmentation strength p, over steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from dcgan_cli.ablate import study as studies  # noqa: E402
from dcgan_cli.evaluate import scoring  # noqa: E402
from dcgan_cli.state import checkpoint  # noqa: E402


def scores(root: Path, *, count: int, overrides: list[str]) -> list[dict]:
    """One row per kept checkpoint of each finished run: variant, seed, step, FD."""
    study = studies.load(root)
    rows = []
    for run in study.runs():
        if studies.finished(run) is None:
            continue
        for found in checkpoint.complete(run.directory):
            _, result = scoring.evaluate_checkpoint(found, count=count, features=study.evaluation["features"],
                                                    seed=0, overrides=overrides,
                                                    progress=False, log=lambda _: None)
            rows.append({"variant": run.variant, "seed": run.seed, "step": checkpoint.read_state(found)["step"],
                         "frechet_distance": round(result["scores"]["frechet_distance"], 4)})
            print(f"{run.variant} seed {run.seed} step {rows[-1]['step']}: FD {rows[-1]['frechet_distance']:.3f}",
                  flush=True)
    return rows


def plot(rows: list[dict], out: Path, *, title: str) -> None:
    """Each variant's mean FD over steps, its runs' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 4.5))
    for variant in sorted({r["variant"] for r in rows}):
        steps = sorted({r["step"] for r in rows if r["variant"] == variant})
        by_step = [[r["frechet_distance"] for r in rows if r["variant"] == variant and r["step"] == s] for s in steps]
        mean = [float(np.mean(v)) for v in by_step]
        ax.plot(steps, mean, marker=".", label=f"{variant} ({len(by_step[-1])} seeds)")
        ax.fill_between(steps, [min(v) for v in by_step], [max(v) for v in by_step], alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("FD against the whole folder (domain features)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_gap(runs: list[Path], out: Path) -> None:
    """D's output gap between training and held-out images (the d_overfits rule's measure) and p, over steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from dcgan_cli.training.plots import read_metrics

    figure, (gap_ax, p_ax) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for run in runs:
        records = read_metrics(run)
        probed = [(r["step"], r["probe"]["d_holdout_gap"]) for r in records if "d_holdout_gap" in r.get("probe", {})]
        logged = [(r["step"], r["augment_p"]) for r in records if "augment_p" in r]
        gap_ax.plot(*zip(*probed), marker=".", label=run.name)
        p_ax.plot(*zip(*logged), label=run.name)
        print(f"{run.name}: largest gap {max(g for _, g in probed):.2f}, last {probed[-1][1]:.2f}; "
              f"last p {logged[-1][1]:.2f}")
    gap_ax.set_ylabel("D(training) - D(held out)")
    p_ax.set_ylabel("augmentation strength p")
    p_ax.set_xlabel("step")
    for ax in (gap_ax, p_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, nargs="?")
    parser.add_argument("--gap", type=Path, nargs="+", help="runs trained with data.holdout to plot the gap of")
    parser.add_argument("--n", type=int, default=1000, help="images scored per checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=None,
                        help="data.KEY=VALUE: the data scored against [default: data.limit=null]")
    parser.add_argument("--out", type=Path, default=Path("small-data.png"))
    args = parser.parse_args()
    if args.gap:
        plot_gap(args.gap, args.out)
        return
    started = time.perf_counter()
    rows = scores(args.study, count=args.n, overrides=args.overrides or ["data.limit=null"])
    with args.out.with_suffix(".csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["variant", "seed", "step", "frechet_distance"])
        writer.writeheader()
        writer.writerows(rows)
    base = json.loads((args.study / studies.PLAN).read_text())["base"]["data"]
    plot(rows, args.out, title=f"{base.get('limit') or 'all'} training images: FD over steps")
    print(f"{len(rows)} checkpoints scored in {time.perf_counter() - started:.0f} s; wrote {args.out} and "
          f"{args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
