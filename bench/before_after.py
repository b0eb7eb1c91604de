"""Does a change alter what a config trains? The same config on the same seeds with the code of two commits, scored
alike and compared paired by seed (docs/measurements.md: Losses on D's logits).

    python bench/before_after.py run STUDY --before REV [--after REV] --config C [--set KEY=VALUE ...] [--seeds 0 1 2]
    python bench/before_after.py report STUDY
    python bench/before_after.py plot STUDY --out curves.png     # scores and D(G(z)) over steps, both sides
    python bench/before_after.py grids STUDY --out grids.jpg     # each run's last sample grid, before | after

`run` writes STUDY/before/ (the code of git revision REV, exported with `git archive` into STUDY/code-REV/) and
STUDY/after/ (this tree, or with --after the code of another revision, so that later edits of the tree do not
change a study that runs for hours), one run directory per seed in each (`seed0/`, ...), trained by `dcgan train`
and then scored by `dcgan evaluate --n N` on the final checkpoint (`final.json`); the two sides of a seed run one
after the other, so a busy machine slows both alike (each starts in its own tree: give data paths as absolute
paths). `--jobs` runs that many at once, each capped at cores / jobs threads. Interrupted, the same command goes
on: finished runs are kept, a run with a checkpoint resumes; `--side` runs one side alone (the other later), and
other `--seeds` add runs to the study. `report` gives each run's tail (the mean of its last 3 training-time scores from
half-way on, as `dcgan ablate` judges runs), its final score, and the paired differences after minus before with
their 95% intervals (ablate/compare.py). `plot` draws each run's training-time scores, D(G(z)) and G's gradient norm
(where logged) over the steps; `grids` puts each seed's last sample grid before beside after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dcgan_cli.ablate import compare
from dcgan_cli.ablate.executors import cores, thread_env
from dcgan_cli.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("before", "after")
FINAL = "final.json"


def export(revision: str, study: Path) -> Path:
    """The tree of `revision` in STUDY/code-REV (exported once), whose dcgan_cli the `before` runs import."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    code = study / f"code-{commit}"
    if not (code / "dcgan_cli").is_dir():
        code.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "dcgan_cli"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code


def one_run(code: Path, run_dir: Path, config: str, sets: list[str], *, seed: int, n: int, features: str,
            threads: int) -> str:
    """Train (or resume, or leave a finished) run and score its final checkpoint; returns a line saying what."""
    if (run_dir / FINAL).is_file():
        return f"{run_dir}: done before"
    env = {**os.environ, **thread_env(threads), "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    command = [sys.executable, "-m", "dcgan_cli", "train", "--config", str(Path(config).resolve()), "--run-dir",
               str(run_dir.resolve()),
               "--set", f"train.seed={seed}", "--set", "output.progress=false"]
    for item in sets:
        command += ["--set", item]
    if (run_dir / "checkpoints").is_dir():
        command.append("--resume")
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=True, cwd=code)
        scored = subprocess.run([sys.executable, "-m", "dcgan_cli", "evaluate", "--checkpoint", str(run_dir.resolve()),
                                 "--n", str(n), "--features", features, "--json"],
                                stdout=subprocess.PIPE, stderr=out, env=env, check=True, cwd=code, text=True)
    result = json.loads(scored.stdout)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    (run_dir / FINAL).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return f"{run_dir}: {result['wall_s']} s"


def run(args: argparse.Namespace) -> None:
    study = Path(args.study).resolve()
    study.mkdir(parents=True, exist_ok=True)
    plan = {"config": args.config, "sets": args.set, "n": args.n, "features": args.features, "before": args.before}
    saved = study / "study.json"
    found = json.loads(saved.read_text()) if saved.is_file() else plan
    if {key: value for key, value in found.items() if key not in ("after", "seeds")} != plan:
        raise SystemExit(f"{study} holds another study ({saved}); pick another directory")
    found["seeds"] = sorted(set(found.get("seeds", [])) | set(args.seeds))  # a later command may add seeds
    if args.side != "before":  # the code the `after` runs are trained with
        found["after"] = args.after
    saved.write_text(json.dumps({**plan, **found}, indent=1) + "\n", encoding="utf-8")
    codes = {"before": export(args.before, study), "after": export(args.after, study) if args.after else ROOT}
    sides = SIDES if args.side == "both" else (args.side,)
    threads = max(1, cores() // args.jobs)
    jobs = [(side, seed) for seed in args.seeds for side in sides]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, codes[side], study / side / f"seed{seed}", args.config, args.set, seed=seed,
                               n=args.n, features=args.features, threads=threads) for side, seed in jobs]
        for future in futures:
            print(future.result(), flush=True)


def scores(study: Path, side: str, *, features: str) -> dict[int, dict]:
    """Each finished seed's tail, tail spread, final score, classes covered and wall time."""
    found = {}
    for final in sorted((study / side).glob(f"seed*/{FINAL}")):
        run_dir = final.parent
        steps = load_config(run_dir / "config.yaml", saved=True).train.steps
        result = json.loads(final.read_text())
        key = "frechet_distance"
        series = compare.training_series(run_dir, features=features, key=key)
        found[int(run_dir.name.removeprefix("seed"))] = {
            "tail": float(np.mean(compare.tail(series, steps=steps))) if series else math.nan,
            "spread": compare.spread(series, steps=steps), "final": float(result["scores"][key]),
            "covered": result["scores"].get("modes_covered", result["scores"].get("bins_covered")),
            "of": result["scores"].get("classes", result["scores"].get("bins")), "wall_s": result.get("wall_s")}
    return found


def report(args: argparse.Namespace) -> None:
    study = Path(args.study)
    plan = json.loads((study / "study.json").read_text())
    sides = {side: scores(study, side, features=plan["features"]) for side in SIDES}
    print(f"{study}: {plan['config']} {' '.join(plan['sets'])}; before = {plan['before']}, "
          f"after = {plan.get('after') or 'the tree'}, "
          f"{plan['features']} FD, final on {plan['n']} images")
    print("| seed | before: last 3 | after: last 3 | before: final | after: final | covered before / after |")
    print("|---|---|---|---|---|---|")
    for seed in sorted(set(sides["before"]) | set(sides["after"])):
        b, a = sides["before"].get(seed), sides["after"].get(seed)

        def cell(side: dict | None, key: str) -> str:
            return "-" if side is None else f"{side[key]:.2f}"

        covered = " / ".join("-" if s is None else f"{s['covered']} of {s['of']}" for s in (b, a))
        print(f"| {seed} | {cell(b, 'tail')} | {cell(a, 'tail')} | {cell(b, 'final')} | {cell(a, 'final')} | "
              f"{covered} |")
    for key, name in (("tail", "last 3"), ("final", "final")):
        before = {seed: s[key] for seed, s in sides["before"].items()}
        after = {seed: s[key] for seed, s in sides["after"].items()}
        effect = compare.paired(after, before)
        mean = {side: sum(v.values()) / len(v) if v else float("nan") for side, v in (("b", before), ("a", after))}
        print(f"{name}: before {mean['b']:.2f}, after {mean['a']:.2f}; after - before {effect.difference:+.2f} "
              f"[{effect.low:+.2f}, {effect.high:+.2f}] over {effect.pairs} seeds: {effect.verdict}")


def runs(study: Path) -> list[tuple[str, int, Path]]:
    """(side, seed, run directory) of every run in the study that has logged something."""
    return [(side, int(run.name.removeprefix("seed")), run) for side in SIDES
            for run in sorted((study / side).glob("seed*")) if (run / "metrics.jsonl").is_file()]


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from dcgan_cli.training.plots import log_scale, read_metrics

    study = Path(args.study)
    plan = json.loads((study / "study.json").read_text())
    figure, axes = plt.subplots(3, 1, figsize=(9, 9.5), sharex=True)
    styles = {"before": "--", "after": "-"}
    for side, seed, run in runs(study):
        records = read_metrics(run)
        label = f"{side} ({plan[side] if plan.get(side) else 'the tree'}), seed {seed}"
        series = compare.training_series(run, features=plan["features"], key="frechet_distance")
        if series:
            axes[0].plot(*zip(*series), styles[side], color=f"C{seed}", marker=".", label=label)
        logs = [r for r in records if "g_loss" in r]
        axes[1].plot([r["step"] for r in logs], [r["d_fake_mean"] for r in logs], styles[side], color=f"C{seed}",
                     label=label)
        normed = [r for r in logs if "g_grad_norm" in r]
        if normed:
            axes[2].plot([r["step"] for r in normed], [r["g_grad_norm"] for r in normed], styles[side],
                         color=f"C{seed}", label=label)
        probed = [r for r in records if "g_grad_norm" in r.get("probe", {})]
        if probed:
            axes[2].plot([r["step"] for r in probed], [r["probe"]["g_grad_norm"] for r in probed], styles[side],
                         color=f"C{seed}", marker="x", linewidth=0.6, label=f"{label}, probe")
    axes[0].set_ylabel(f"{plan['features']} FD\n(training-time)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("D(G(z))")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("G's gradient norm")
    log_scale(axes[2], [value for line in axes[2].get_lines() for value in line.get_ydata()])
    axes[2].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title(f"{study.name}: before = {plan['before']}, after = {plan.get('after') or 'the tree'}")
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


def grids(args: argparse.Namespace) -> None:
    from PIL import Image, ImageDraw

    study = Path(args.study)
    found = {}
    for side, seed, run in runs(study):
        last = sorted((run / "samples").glob("step_*.png"))
        if last:
            found.setdefault(seed, {})[side] = last[-1]
    tiles = []
    for seed, sides in sorted(found.items()):
        row = []
        for side in SIDES:
            if side not in sides:
                continue
            with Image.open(sides[side]) as opened:
                picture = opened.convert("RGB").resize((args.size, args.size), Image.LANCZOS)
            caption = Image.new("RGB", (args.size, 22), (255, 255, 255))
            ImageDraw.Draw(caption).text((6, 5), f"{side}, seed {seed}, {sides[side].stem}", fill=(0, 0, 0))
            tile = Image.new("RGB", (args.size, args.size + 22), (255, 255, 255))
            tile.paste(caption, (0, 0))
            tile.paste(picture, (0, 22))
            row.append(tile)
        tiles.append(row)
    width = max(len(row) for row in tiles) * (args.size + 8)
    sheet = Image.new("RGB", (width, len(tiles) * (args.size + 30)), (255, 255, 255))
    for y, row in enumerate(tiles):
        for x, tile in enumerate(row):
            sheet.paste(tile, (x * (args.size + 8), y * (args.size + 30)))
    sheet.save(args.out, quality=88)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trains = commands.add_parser("run", help="train and score both sides")
    trains.add_argument("study")
    trains.add_argument("--before", required=True, help="the git revision whose code trains the `before` runs")
    trains.add_argument("--after", help="the git revision whose code trains the `after` runs [default: this tree]")
    trains.add_argument("--config", required=True)
    trains.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    trains.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    trains.add_argument("--jobs", type=int, default=1)
    trains.add_argument("--n", type=int, default=5000, help="images of the final generator scored")
    trains.add_argument("--features", default="domain")
    trains.add_argument("--side", choices=("both", *SIDES), default="both")
    reports = commands.add_parser("report", help="the paired table of a study")
    reports.add_argument("study")
    plots = commands.add_parser("plot", help="scores, D(G(z)) and G's gradient norm over steps")
    plots.add_argument("study")
    plots.add_argument("--out", default="before-after.png")
    sheets = commands.add_parser("grids", help="each seed's last grid, before beside after")
    sheets.add_argument("study")
    sheets.add_argument("--out", default="before-after.jpg")
    sheets.add_argument("--size", type=int, default=384, help="each grid's side in the sheet, in pixels")
    args = parser.parse_args()
    {"run": run, "report": report, "plot": plot, "grids": grids}[args.command](args)


if __name__ == "__main__":
    main()
