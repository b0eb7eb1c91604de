"""TensorFlow's oneDNN kernels off and on, float32 and bfloat16, on what a user runs: `dcgan train --config
configs/digits.yaml` (the default loop, on every core) and one `dcgan tune` worker (a trial of the digits' space at
one compute thread, as each worker of a two-job screen runs), every measurement a fresh process, rounds interleaved
so that a busy machine slows all sides alike. Images/s come from each run's metrics.jsonl, the first log window
(with compilation) left out.

    python bench/defaults.py [--steps 300] [--rounds 3] [--isa AVX2]

The sides: oneDNN off (what TensorFlow does by itself on an x86 CPU without AVX-512 VNNI, BF16 or AMX: before the
tool turned it on there) and on, each in float32 and in bfloat16, and the tool's defaults (TF_ENABLE_ONEDNN_OPTS
unset, train.mixed_precision auto). --isa caps the instruction set oneDNN's kernels use (ONEDNN_MAX_CPU_ISA, e.g.
AVX2 for a CPU without AVX-512, where bfloat16 has no hardware support); TensorFlow's own kernels are built for
AVX and are the same on either.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dcgan_cli import machine

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "configs" / "digits.yaml"
SPACE = ROOT / "configs" / "spaces" / "digits.yaml"
# (oneDNN switch, train.mixed_precision) per side; None leaves the switch to the tool's default.
SIDES = {"oneDNN off, float32": ("0", "off"), "oneDNN on, float32": ("1", "off"),
         "oneDNN off, bfloat16": ("0", "bfloat16"), "oneDNN on, bfloat16": ("1", "bfloat16"),
         "defaults (auto)": (None, "auto")}


def train_command(run: Path, steps: int, precision: str) -> list[str]:
    """`dcgan train` on the digits as configs/digits.yaml says, `steps` long, without scores or grids on the way."""
    return [sys.executable, "-m", "dcgan_cli", "train", "--config", str(DIGITS), "--run-dir", str(run),
            *_sets(steps, precision)]


def tune_command(run: Path, steps: int, precision: str) -> list[str]:
    """`dcgan tune` with one trial (the base) and two jobs: its worker computes on cores / 2 threads."""
    return [sys.executable, "-m", "dcgan_cli", "tune", "--config", str(DIGITS), "--space", str(SPACE), "--trials",
            "1", "--jobs", "2", "--pruner", "none", "--n", "100", "--run-dir", str(run), *_sets(steps, precision)]


def _sets(steps: int, precision: str) -> list[str]:
    values = [f"train.steps={steps}", f"train.mixed_precision={precision}", f"output.log_every={max(steps // 6, 1)}",
              "output.eval_every=0", f"output.sample_every={steps}", f"output.checkpoint_every={steps}",
              "output.progress=false"]
    return [arg for value in values for arg in ("--set", value)]


WORKLOADS = {"dcgan train, digits": (train_command, "metrics.jsonl"),
             "one dcgan tune worker": (tune_command, "trials/*/metrics.jsonl")}


def measure(workload: str, side: str, *, steps: int, isa: str | None) -> dict:
    """One run of `workload` with the side's settings in a fresh process: images/s, median over its log windows."""
    command, metrics = WORKLOADS[workload]
    switch, precision = SIDES[side]
    env = {key: value for key, value in os.environ.items() if key != machine.ONEDNN}
    if switch is not None:
        env[machine.ONEDNN] = switch
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    with tempfile.TemporaryDirectory(prefix="bench-defaults-") as scratch:
        run = Path(scratch) / "run"
        done = subprocess.run(command(run, steps, precision), capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{workload}, {side} failed:\n{done.stderr[-2000:]}")
        found = next(run.glob(metrics))
        records = [json.loads(line) for line in found.read_text().splitlines()]
    rates = [record["images_per_s"] for record in records if "images_per_s" in record][1:]
    precisions = {record["precision"] for record in records if "precision" in record}
    return {"workload": workload, "side": side, "images_per_s": round(statistics.median(rates), 1),
            "windows": len(rates), "precision_used": sorted(precisions), "onednn_switch": switch, "isa": isa}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA for every side, e.g. AVX2")
    parser.add_argument("--sides", nargs="+", choices=sorted(SIDES), default=list(SIDES))
    args = parser.parse_args()
    found = {(workload, side): [] for workload in WORKLOADS for side in args.sides}
    for round_number in range(args.rounds):
        for workload in WORKLOADS:
            for side in args.sides:
                result = measure(workload, side, steps=args.steps, isa=args.isa)
                found[(workload, side)].append(result["images_per_s"])
                print(json.dumps({"round": round_number + 1, **result}), flush=True)
    cpu = machine.this_cpu()
    print(f"\n{args.steps} steps a run, median of {args.rounds} interleaved rounds; {cpu.describe()}; oneDNN by "
          f"TensorFlow itself here: {'yes' if cpu.tensorflow_enables_onednn else 'no'}"
          f"{'; ONEDNN_MAX_CPU_ISA=' + args.isa if args.isa else ''}")
    first = args.sides[0]
    for workload in WORKLOADS:
        base = statistics.median(found[(workload, first)])
        print(f"\n{workload}: images/s, and vs {first}")
        for side in args.sides:
            values = found[(workload, side)]
            median = statistics.median(values)
            print(f"  {side:<24}{median:>9.1f}{median / base:>8.2f}x   {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    sys.exit(main())
