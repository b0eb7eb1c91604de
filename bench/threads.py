"""Two cores for a study: two workers at one compute thread each (`--jobs 2`, each worker's caps as
`dcgan tune-run` sets them), or one worker at two threads (`--jobs 1`). Each side trains the compiled step of
bench/throughput.py for the same time on random data; the pair's images/s is the sum of its two workers', measured
while both run. Rounds interleaved, every measurement a fresh process.

    python bench/threads.py [--arch dcgan32] [--set model.channels=3] [--precision auto] [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from dcgan_cli import machine
from dcgan_cli.ablate.executors import cores, thread_env

THROUGHPUT = Path(__file__).resolve().parent / "throughput.py"


def command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(THROUGHPUT), "--arch", args.arch, "--loop", "compiled", "--precision",
            args.precision, "--steps", str(args.steps), *[arg for item in args.set for arg in ("--set", item)]]


def workers(args: argparse.Namespace, count: int) -> list[float]:
    """`count` workers at once, each at cores / count threads: each one's images/s."""
    env = {**os.environ, **thread_env(max(1, cores() // count))}
    processes = [subprocess.Popen(command(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env=env) for _ in range(count)]
    rates = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed: {command(args)}")
        rates.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1])["images_per_s"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="dcgan32")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--precision", default="off", choices=("off", "auto", "bfloat16"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"one worker, two threads": 1, "two workers, one thread each": 2}
    found = {name: [] for name in sides}
    for round_number in range(args.rounds):
        for name, count in sides.items():
            rates = workers(args, count)
            found[name].append(sum(rates))
            print(json.dumps({"round": round_number + 1, "side": name, "workers_images_per_s": rates}), flush=True)
    print(f"\n{args.arch} {' '.join(args.set)}, precision {args.precision}, {args.steps} steps a worker, median of "
          f"{args.rounds} interleaved rounds; {machine.this_cpu().describe()}, {cores()} cores")
    first = statistics.median(next(iter(found.values())))
    for name, values in found.items():
        median = statistics.median(values)
        print(f"  {name:<30}{median:>9.1f} images/s{median / first:>8.2f}x   {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    sys.exit(main())
