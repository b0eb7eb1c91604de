"""How many of a study's verdicts leave "within noise" as seeds are added, under the old statistics and the new
(docs/measurements.md: Sharper comparisons).

    python bench/verdicts.py STUDY [--seeds 2 3]

STUDY is a finished `dcgan ablate` directory. For each number of seeds k, the study is read as if it had only
seeds 0..k-1, and each variant is compared with the reference twice:

- old: Welch's t-test of the final generator's score (one checkpoint per run, --n images), as `dcgan ablate` did;
- paired: the same final scores compared paired by seed (what pairing alone changes);
- new: the mean of each run's last 3 scores from half-way on, compared paired by seed (ablate/compare.py), as it
  does now.

It prints one Markdown table per k and the checkpoint spread (how far one checkpoint's score wanders in a run).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from dcgan_cli.ablate import compare, report
from dcgan_cli.ablate import study as studies


def rows(root: Path, seeds: int) -> list[dict]:
    study = studies.load(root)
    if seeds > study.seeds:
        raise SystemExit(f"{root} has {study.seeds} seeds; asked for {seeds}")
    collected = report.collect(dataclasses.replace(study, seeds=seeds))
    key = collected.metric[0]
    reference = next(v for v in collected.variants if v.name == study.reference)
    found = []
    for v in collected.variants:
        if v.name == study.reference:
            continue
        old = compare.welch(v.values(key), reference.values(key))
        paired = compare.paired(finals(v, key), finals(reference, key))
        new = compare.paired(v.tails(), reference.tails())
        found.append({"variant": v.name, "old": old, "paired": paired, "new": new, "spread": v.spread()})
    found.append({"variant": study.reference, "spread": reference.spread(),
                  "final": reference.values(key), "tail": np.array(list(reference.tails().values()))})
    return found


def finals(variant: report.VariantSummary, key: str) -> dict[int, float]:
    return {r["seed"]: r["scores"][key] for r in variant.scored}


def text(effect: compare.Effect) -> str:
    if not math.isfinite(effect.low):
        return f"{effect.difference:+.2f}, {effect.verdict}"
    return f"{effect.difference:+.2f} [{effect.low:+.2f}, {effect.high:+.2f}] {effect.verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    for seeds in args.seeds:
        found = rows(args.study, seeds)
        reference = found.pop()
        print(f"\n{seeds} seeds: reference {reference['variant']}, final FD {reference['final'].mean():.2f} ± "
              f"{reference['final'].std(ddof=1):.2f}, last-3 FD {reference['tail'].mean():.2f} ± "
              f"{reference['tail'].std(ddof=1):.2f}, checkpoint spread {reference['spread']:.2f}\n")
        print("| variant | old: final FD, Welch [95% CI] | final FD, paired | new: last 3, paired | "
              "checkpoint spread |")
        print("|---|---|---|---|---|")
        for row in found:
            print(f"| {row['variant']} | {text(row['old'])} | {text(row['paired'])} | {text(row['new'])} | "
                  f"{row['spread']:.2f} |")
        left = {name: sum(row[name].verdict in ("helps", "hurts") for row in found)
                for name in ("old", "paired", "new")}
        print("\nverdicts beyond noise: " + ", ".join(f"{name} {count} of {len(found)}" for name, count in left.items()))


if __name__ == "__main__":
    main()
