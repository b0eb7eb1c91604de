"""Wall time of one small study run with --jobs 1, 2, ... on this machine, each in a fresh directory, printed as
one JSON line per setting and a last line with the speed-ups over --jobs 1.

    python bench/ablate.py [--config configs/ablate-digits.yaml] [--jobs 1 2] [--seeds 2] [--factors batch_norm]
                           [--set train.steps=500 ...]

With N jobs each run's compute threads are capped at cores // N (what `dcgan ablate` does), so the settings share
the same cores; the study is the base and each factor switched, `--seeds` times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dcgan_cli.ablate.executors import cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "ablate-digits.yaml"))
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--factors", default="batch_norm")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to dcgan ablate (a shorter study: train.steps=500)")
    args = parser.parse_args()
    figures = {}
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory(prefix="bench-ablate-") as scratch:
            command = [sys.executable, "-m", "dcgan_cli", "ablate", "--config", args.config, "--factors", args.factors,
                       "--seeds", str(args.seeds), "--jobs", str(jobs), "--run-dir", str(Path(scratch) / "study"),
                       *(part for item in args.overrides for part in ("--set", item))]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            runs = len(list(Path(scratch).glob("study/variants/*/*/result.json")))
        figures[jobs] = seconds
        print(json.dumps({"jobs": jobs, "threads_per_run": max(1, cores() // jobs), "runs": runs,
                          "wall_s": round(seconds, 1), "s_per_run": round(seconds / runs, 1)}), flush=True)
    first = figures[args.jobs[0]]
    print(json.dumps({"speedup_over_jobs_" + str(args.jobs[0]): {str(j): round(first / s, 2)
                                                                 for j, s in figures.items()}}))


if __name__ == "__main__":
    main()
