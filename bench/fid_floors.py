"""The floor of the standard FID on a real folder: real images against other real images of the same set, at the
sizes FIDs are reported at, and the time the network takes per 10,000 images on this machine.

    python bench/fid_floors.py --data data/cifar10-test --size 32 [--sizes 1000,5000]

The folder (decoded as `dcgan train` decodes it at --size, without labels) is the reference `dcgan evaluate
--features fid` builds for it: the same fixed shuffle through the standard FID network (the fid extra), cached in
the same place, so this call also saves every later evaluation against the folder its real images. For each size
n it prints the FID of the first n of the shuffled images against the next n, disjoint: what a perfect generator
would score against that reference at that size (the estimator's bias, Chong & Forsyth 2020). One JSON line per
measurement, then a Markdown table. Only the feature vectors a reference keeps (the first 10,000) are split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.data import sources  # noqa: E402
from dcgan_cli.evaluate import scoring, stats  # noqa: E402


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return stats.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder of real images")
    parser.add_argument("--size", type=int, default=32, help="model.image_size the folder is decoded at")
    parser.add_argument("--sizes", default="1000,5000", help="images on each side of a floor")
    parser.add_argument("--cache", default=None, help="data.cache_dir [default: the data cache's default]")
    args = parser.parse_args()
    cfg = load_config(None, ["data.name=folder", f"data.path={args.data}", "data.labels=false",
                             f"model.image_size={args.size}", "model.channels=3",
                             f"data.cache_dir={args.cache or 'null'}"])
    dataset = sources.load_dataset(cfg, progress=False)
    started = time.perf_counter()
    ref = scoring.reference(dataset, "fid", cfg=cfg, progress=True)
    seconds = time.perf_counter() - started
    found = ref.real.kept
    print(json.dumps({"what": "the reference: the folder through the standard FID network, or read from its cache",
                      "images": ref.real.count, "seconds": round(seconds, 1),
                      "seconds_per_10000": round(10_000 * seconds / ref.real.count),
                      "threads": os.environ.get("OMP_NUM_THREADS", "all cores"), "cpus": os.cpu_count()}))
    rows = []
    for n in sorted(int(size) for size in args.sizes.split(",")):
        if 2 * n > len(found):
            raise SystemExit(f"--sizes: {n} on each side needs {2 * n} images; the reference keeps {len(found)}")
        rows.append({"what": f"first {n:,} against the next {n:,}", "images": n,
                     "fid": round(distance(found[:n].astype(np.float64), found[n:2 * n].astype(np.float64)), 3)})
        print(json.dumps(rows[-1]))
    print("\n| Real against real | FID |\n|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['fid']:.2f} |")


if __name__ == "__main__":
    main()
