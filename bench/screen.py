"""A tuning screen's speed, before and after a change: the first trials of a committed study (docs/studies/...)
replayed with the code of two trees on the same machine at once, each tree one worker on one core (the other core
busy with the other tree's worker, as in a two-job screen), every trial trained to where it ended in the study
(pruned at the same step, or to the end): equal pruning, so trials per hour compare the code alone.

    python bench/screen.py run OUT --study docs/studies/cifar10 --trials 12 --before REV [--after REV] \\
        [--set data.path=PATH] [--after-set train.mixed_precision=auto] [--before-env K=V] [--after-env K=V]
    python bench/screen.py report OUT

`run` exports the before revision (and --after's, else this tree is the after side) into OUT, writes each side's
base config (the study's, with --set, then the side's own --before-set / --after-set), and replays the trials:
each trial is one worker process of that side's code at one compute thread (`dcgan tune-run`'s caps), planned as
the study planned it (its values on the base) and run by the ablation worker with a judge that stops it at the
step the study's pruner stopped it. A trial the config refuses costs what checking it costs. When one side is done
first, it trains its trials again (not counted) until the other is, so the machine stays as loaded. Each finished
trial's figures are kept in OUT/<side>/NNNN.json: interrupted, the same command goes on with the trials left.
`report` prints each trial's seconds on both sides and the trials per hour of a two-worker screen.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("before", "after")
STARTED_WITH = dict(os.environ)  # before any import of dcgan_cli sets its oneDNN default in this process
# Run by each side's worker process with that side's dcgan_cli: plan the trial as `dcgan tune` does and run it as
# `dcgan tune-run` does (ablate/worker.run_one), stopped at the study's step; one JSON line.
WORKER = r"""
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from dcgan_cli import config as config_module
from dcgan_cli.config import ConfigError, load_config
from dcgan_cli.tune.space import parse_space
side, number, spec = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
base = load_config(side / "base.yaml")
run = side / "runs" / f"{number:04d}"
try:
    cfg = parse_space(spec["space"], source="tune.json").apply(base, spec["values"])
except ConfigError as error:  # refused as `dcgan tune` refuses it, before any worker starts
    print(json.dumps({"status": "refused", "note": str(error)[:200], "seconds": time.perf_counter() - started}))
    sys.exit(0)
from dcgan_cli.ablate.study import plan_run
from dcgan_cli.ablate.worker import run_one
cfg = config_module.replace_value(cfg, "output.progress", False)
cfg = config_module.replace_value(cfg, "output.run_dir", str(run))
plan_run(run, cfg, variant=f"trial {number}", seed=0, changes="", evaluation=spec["evaluation"])
stop = spec["stop_at"]
found = run_one(run, judge=lambda step, value: stop is not None and step >= stop)
used = load_config(run / "config.yaml", saved=True).train.mixed_precision
print(json.dumps({"status": found["status"], "step": found.get("step"), "precision": used,
                  "seconds": time.perf_counter() - started}))
"""


def export(revision: str, out: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from before_after import export as export_tree

    return export_tree(revision, out)


def study_trials(study: Path, count: int) -> list[dict]:
    """The study's first `count` trials: their values, their state and the step the pruner stopped them at."""
    rows = list(csv.DictReader((study / "trials.csv").open(encoding="utf-8")))[:count]
    space = json.loads((study / "tune.json").read_text())["space"]
    trials = []
    for row in rows:
        number = int(row["trial"])
        saved = study / "trials" / f"{number:04d}" / "trial.json"
        values = (json.loads(saved.read_text())["values"] if saved.is_file()
                  else {key: yaml.safe_load(row[key]) for key in space})  # a refused trial: the report's values
        trials.append({"number": number, "state": row["state"], "values": values,
                       "stop_at": int(row["pruned_at"]) if row["pruned_at"] else None,
                       "study_seconds": float(row["seconds"] or 0)})
    return trials


def side_base(study: Path, sets: list[str], own: list[str]) -> str:
    """The study's base config as YAML with `sets` and then the side's `own` values set (section.key=value); a
    relative data.path is taken from where this command runs (each side's worker runs in its own tree)."""
    base = json.loads((study / "tune.json").read_text())["base"]
    for item in [*sets, *own]:
        key, _, text = item.partition("=")
        section, name = key.split(".")
        base[section][name] = yaml.safe_load(text)
    if base["data"].get("path"):
        base["data"]["path"] = str(Path(base["data"]["path"]).resolve())
    return yaml.safe_dump(base, sort_keys=False)


def run_trial(side: Path, code: Path, trial: dict, spec: dict, env: dict[str, str], *, stop=None) -> dict | None:
    """One trial in a fresh worker process of `code`, its run directory made anew; its figures, or None when
    `stop()` said to end it first (a trial run only to keep the machine loaded)."""
    shutil.rmtree(side / "runs" / f"{trial['number']:04d}", ignore_errors=True)
    payload = json.dumps({**spec, "values": trial["values"], "stop_at": trial["stop_at"]})
    started = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", WORKER, str(side.resolve()), str(trial["number"]), payload],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=code,
                          env={**env, "PYTHONPATH": str(code)}) as process:
        while process.poll() is None:
            if stop is not None and stop():
                process.kill()
                process.communicate()
                return None
            time.sleep(0.5)
        out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{side.name} trial {trial['number']} failed:\n{err[-3000:]}")
    found = json.loads(out.strip().splitlines()[-1])
    # A trained trial costs its worker process; a refused one only its check (the study starts no process).
    cost = found["seconds"] if found["status"] == "refused" else wall
    return {**found, "number": trial["number"], "wall_s": round(cost, 2), "study_state": trial["state"],
            "study_seconds": trial["study_seconds"]}


def run(args: argparse.Namespace) -> None:
    out, study = Path(args.out), Path(args.study)
    out.mkdir(parents=True, exist_ok=True)
    trials = study_trials(study, args.trials)
    saved = json.loads((study / "tune.json").read_text())
    spec = {"space": saved["space"], "evaluation": saved["evaluation"]}
    from dcgan_cli.ablate.executors import thread_env

    codes = {"before": export(args.before, out), "after": export(args.after, out) if args.after else ROOT}
    own = {"before": args.before_set, "after": args.after_set}
    extra = {"before": args.before_env, "after": args.after_env}
    finished: set[str] = set()
    failures: list[BaseException] = []

    def everyone_done() -> bool:
        return len(finished) == len(SIDES) or bool(failures)

    def side_loop(name: str) -> None:
        side = out / name
        side.mkdir(exist_ok=True)
        (side / "base.yaml").write_text(side_base(study, args.set, own[name]))
        # The environment this bench was started with (not the oneDNN default its own import of dcgan_cli may
        # have set), one compute thread, and the side's own variables.
        env = {**STARTED_WITH, **thread_env(1), **dict(item.split("=", 1) for item in extra[name])}
        try:
            for trial in trials:
                result = side / f"{trial['number']:04d}.json"
                if result.is_file():
                    continue
                found = run_trial(side, codes[name], trial, spec, env)
                result.write_text(json.dumps(found, indent=1) + "\n")
                print(json.dumps({"side": name, **found}), flush=True)
            finished.add(name)
            while not everyone_done():  # the other side still runs: keep the machine as loaded, not counted
                for trial in (t for t in trials if t["state"] != "refused"):
                    if run_trial(side, codes[name], trial, spec, env, stop=everyone_done) is None:
                        break
        except BaseException as error:  # noqa: BLE001 - the main thread reports it
            failures.append(error)
            finished.add(name)

    threads = [threading.Thread(target=side_loop, args=(name,)) for name in SIDES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(str(failures[0]))
    report(args)


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    found = {name: {int(p.stem): json.loads(p.read_text()) for p in sorted((out / name).glob("[0-9]*.json"))}
             for name in SIDES}
    numbers = sorted(set(found["before"]) & set(found["after"]))
    print(f"{'trial':>5}  {'in the study':<22}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for number in numbers:
        before, after = found["before"][number], found["after"][number]
        ended = before["study_state"] + (f" at {before['step']}" if before["study_state"] == "pruned" else "")
        print(f"{number:>5}  {ended:<22}{before['wall_s']:>10.1f}{after['wall_s']:>10.1f}"
              f"{after['wall_s'] / max(before['wall_s'], 1e-9):>14.2f}")
    totals = {name: sum(found[name][n]["wall_s"] for n in numbers) for name in SIDES}
    print(f"\n{len(numbers)} trials, each side one worker at one compute thread, both at once:")
    for name in SIDES:
        per_hour = len(numbers) / totals[name] * 3600 if totals[name] else 0.0
        precisions = sorted({found[name][n].get("precision") for n in numbers} - {None})
        print(f"  {name:<7} {totals[name]:>8.0f} s of worker time, {per_hour:5.2f} trials per worker-hour, "
              f"{2 * per_hour:5.2f} per hour with two workers ({', '.join(precisions)})")
    if totals["after"]:
        print(f"  after / before: {totals['before'] / totals['after']:.2f}x the trials per hour")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run")
    running.add_argument("out")
    running.add_argument("--study", required=True, help="a committed study directory, e.g. docs/studies/cifar10")
    running.add_argument("--trials", type=int, default=12)
    running.add_argument("--before", required=True, help="the git revision of the before side")
    running.add_argument("--after", help="the git revision of the after side [default: this tree]")
    running.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="a value of both sides' base, e.g. data.path=...; repeatable")
    running.add_argument("--before-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    running.add_argument("--after-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    running.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE")
    running.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE")
    reporting = commands.add_parser("report")
    reporting.add_argument("out")
    args = parser.parse_args()
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    sys.exit(main())
