"""Speed and memory of `dcgan evaluate`'s parts, each printed as one JSON line.

    python bench/evaluate.py classifier [--mnist DIR]      # the domain classifier's one-time training, 10,000 MNIST
    python bench/evaluate.py domain --n 5000 [--mnist DIR] # domain-scoring n generated 28x28 images, classifier cached
    python bench/evaluate.py fid --n 10000                 # n generated images through the standard FID network
    python bench/evaluate.py domain --n 100 --limit 500    # a smaller real set (data.limit), e.g. to check it runs

MNIST is read from the IDX files in --mnist (default ../shared/data/mnist-t10k beside the project). The generator
is the 28x28 (or, for fid, the digits') DCGAN with fresh weights: speed and memory do not depend on what it
learned, and every image is resized to 299x299 before the network, whatever its size. The fid mode needs the fid
extra (pip install -e ".[fid]"); its threads are PyTorch's (OMP_NUM_THREADS). Each mode runs in its own process
so that its peak RSS is its own; caches go to a fresh temporary folder unless --cache names one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from dcgan_cli.data import sources  # noqa: E402
from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.evaluate import domain, fid, scoring  # noqa: E402
from dcgan_cli.evaluate.features import image_batches, summarise  # noqa: E402
from dcgan_cli.nets.models import build_generator  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mnist_config(path: Path, cache: str, limit: int | None):
    return load_config(None, ["data.name=mnist", f"data.path={path}", "model.image_size=28",
                              f"data.cache_dir={cache}", f"data.limit={limit or 'null'}"])


def bench_classifier(args) -> dict:
    cfg = mnist_config(args.mnist, args.cache, args.limit)
    dataset = sources.load_dataset(cfg, progress=False)
    started = time.perf_counter()
    trained = domain.load_or_train(dataset, cache_dir=cfg.data.cache_dir, progress=True, log=lambda m: None)
    return {"what": "domain classifier, one-time training and real summary", "images": len(dataset.images),
            "seconds": round(time.perf_counter() - started, 2), "held_out_accuracy": trained.accuracy,
            "peak_rss_mib": round(peak_rss_mib())}


def generated(cfg, count: int):
    g = build_generator(cfg, np.random.default_rng(0))
    return scoring.generated_batches(g, cfg, scoring.drawn_latents(cfg, count, np.random.default_rng(1)))


def bench_domain(args) -> dict:
    cfg = mnist_config(args.mnist, args.cache, args.limit)
    dataset = sources.load_dataset(cfg, progress=False)
    ref = scoring.reference(dataset, "domain", cfg=cfg, progress=False, log=lambda m: None)  # trained if not cached
    started = time.perf_counter()
    result = scoring.score(ref, generated(cfg, args.n), total=args.n, generated="bench", progress=True)
    seconds = time.perf_counter() - started
    return {"what": "domain scores of generated 28x28 images, classifier cached", "images": args.n,
            "seconds": round(seconds, 2), "images_per_s": round(args.n / seconds), "scores": result["scores"],
            "peak_rss_mib": round(peak_rss_mib())}


def bench_fid(args) -> dict:
    cfg = load_config(None, [f"data.cache_dir={args.cache}", f"data.limit={args.limit or 'null'}"])
    dataset = sources.load_dataset(cfg, progress=False)
    extractor = fid.StandardInception()
    started = time.perf_counter()
    real = summarise(extractor, image_batches(dataset.images, np.arange(len(dataset.images)), extractor.batch_size),
                     batch_size=extractor.batch_size, total=len(dataset.images), progress=True, description="real")
    real_seconds = time.perf_counter() - started
    ref = scoring.Reference(features="fid", extractor=extractor, real=real,
                            real_set=scoring.describe_real(dataset, real.count))
    after_real = peak_rss_mib()
    started = time.perf_counter()
    result = scoring.score(ref, generated(cfg, args.n), total=args.n, generated="bench", progress=True)
    seconds = time.perf_counter() - started
    return {"what": "FID, KID, precision and recall of generated images in the standard FID network",
            "device": str(extractor.device), "real_images": real.count, "real_seconds": round(real_seconds, 1),
            "images": args.n, "seconds": round(seconds, 1), "images_per_s": round(args.n / seconds, 1),
            "seconds_per_10000": round(10_000 * seconds / args.n), "peak_rss_mib_after_real_set": round(after_real),
            "peak_rss_mib": round(peak_rss_mib()), "fid": result["scores"]["fid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("classifier", "domain", "fid"))
    parser.add_argument("--n", type=int, default=5000, help="generated images to score")
    parser.add_argument("--mnist", type=Path, default=MNIST, help="folder of the MNIST IDX files")
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    parser.add_argument("--limit", type=int, default=None, help="real images used (data.limit) [default: all]")
    args = parser.parse_args()
    if args.mode != "fid" and not args.mnist.is_dir():
        sys.exit(f"no MNIST IDX files in {args.mnist}; pass --mnist DIR")
    args.cache = args.cache or tempfile.mkdtemp(prefix="dcgan-bench-cache-")
    bench = {"classifier": bench_classifier, "domain": bench_domain, "fid": bench_fid}[args.mode]
    print(json.dumps({"mode": args.mode, **bench(args), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
