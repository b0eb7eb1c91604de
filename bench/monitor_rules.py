"""What today's monitor rules say of finished runs: each run's metrics.jsonl replayed through the rules of this
tree, with its config's labels and today's thresholds (docs/monitor.md: Calibration).

    python bench/monitor_rules.py RUN [RUN ...] [--set monitor.KEY=VALUE ...]

Prints a Markdown table: per run, the steps logged, D(G(z)) per log (lowest and 5th percentile) against the bound
of the d_wins rule (the floor the run's labels allow, hacks.fake_label_mean, plus monitor.d_wins_margin), G's
gradient norm per log (lowest; runs from before it was logged have none) and at the probes, and every trip with
its step. A run trained before a rule existed is judged as if it had been watched from its start.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dcgan_cli.config import load_config, with_overrides
from dcgan_cli.nets import hacks
from dcgan_cli.training.monitor import Monitor
from dcgan_cli.training.plots import read_metrics


def judged(run: Path, overrides: list[str]) -> dict:
    cfg = with_overrides(load_config(run / "config.yaml", saved=True), overrides)
    floor = hacks.fake_label_mean(cfg.hacks)
    monitor = Monitor(cfg.monitor, fake_floor=floor)
    records = read_metrics(run)
    trips = [trip for record in records for trip in monitor.observe(record)]
    logs = [r for r in records if "g_loss" in r]
    fake = np.array([r["d_fake_mean"] for r in logs])
    norms = [r["g_grad_norm"] for r in logs if "g_grad_norm" in r]
    probed = [r["probe"]["g_grad_norm"] for r in records if "g_grad_norm" in r.get("probe", {})]
    return {"run": str(run), "steps": logs[-1]["step"] if logs else 0, "fake_min": fake.min(),
            "fake_p5": np.percentile(fake, 5), "bound": floor + cfg.monitor.d_wins_margin,
            "norm_min": min(norms) if norms else None, "probe_min": min(probed) if probed else None,
            "trips": [f"{t.rule} @ {t.step:,}" for t in trips]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="monitor.KEY=VALUE",
                        help="judge with other thresholds")
    args = parser.parse_args()
    print("| run | steps | D(G(z)) per log: lowest, 5th percentile | d_wins bound | G's gradient norm: lowest "
          "per log, at probes | trips |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        j = judged(run, args.overrides)
        norm = "-" if j["norm_min"] is None else f"{j['norm_min']:.3g}"
        probe = "-" if j["probe_min"] is None else f"{j['probe_min']:.3g}"
        print(f"| {j['run']} | {j['steps']:,} | {j['fake_min']:.4f}, {j['fake_p5']:.4f} | {j['bound']:.4f} | "
              f"{norm}, {probe} | {', '.join(j['trips']) or 'none'} |")


if __name__ == "__main__":
    main()
