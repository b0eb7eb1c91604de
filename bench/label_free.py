"""Does the label-free score mean something? The checks of the manual's "Does it mean anything?" table (docs/scores.md).

    python bench/label_free.py sets --data ../shared/data/cifar10-test --size 32 --channels 3 [--bins 20]
    python bench/label_free.py sets --data ../shared/data/mnist-t10k --name mnist --size 28 --channels 1
    python bench/label_free.py rank runs/cifar-default runs/cifar-moving [--n 2000]
    python bench/label_free.py floor runs/cifar-default runs/cifar-moving [--epochs 1,2,3,5] [--n 2000]

`sets` reads a labelled dataset with its labels hidden (the rotation network is trained as on a user's unlabelled
folder) and scores four sets of 1,500 images against it, in rotation features: real images the network never saw,
the same blurred, real images of two classes only (the labels are used here to pick them, nowhere else), and
uniform noise. It prints FD, NDB/K, bins covered, precision and recall of each, and the same sets in the labelled
domain features beside them. --bins sets NDB's number of k-means bins (stats.NDB_BINS) to compare choices.

`rank` scores every checkpoint of the given runs (each run's config names its data: a labelled folder) in rotation
features and in domain features, prints both, and the Spearman rank correlation of the two FDs over all checkpoints
(scipy) within each run and over all of them: whether the label-free score orders generators as the labelled one.

`floor` measures what the domain classifier's accuracy floor protects: classifiers of the runs' data trained for
fewer epochs (weaker, closer to chance) score the same checkpoints, and each one's held-out accuracy, skill (what
output.eval_min_skill is compared with) and the Spearman correlation of its FD with the cached classifier's are
printed: how weak a classifier can be before its FD stops ranking generators as a stronger one does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from dcgan_cli.state import checkpoint  # noqa: E402
from dcgan_cli.data import sources  # noqa: E402
from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.evaluate import domain, network, scoring, stats  # noqa: E402
from dcgan_cli.evaluate.features import dataset_key, key_seed, summarise  # noqa: E402
from dcgan_cli.nets.models import generate  # noqa: E402

TWO_CLASSES = (3, 7)  # CIFAR-10: cat, horse; MNIST: 3, 7


def quiet(message: str) -> None:
    print(f"  ({message})", flush=True)


def blurred(images: np.ndarray) -> np.ndarray:
    """Gaussian blur of radius 1 (colour) or 1.5 (grey, as the MNIST table of docs/measurements.md)."""
    radius = 1.0 if images.shape[-1] == 3 else 1.5
    out = [np.asarray(Image.fromarray(i[..., 0] if i.shape[-1] == 1 else i).filter(ImageFilter.GaussianBlur(radius)))
           for i in images]
    return np.stack(out).reshape(images.shape)


def score_sets(args: argparse.Namespace) -> None:
    cache = [f"data.cache_dir={args.cache}"] if args.cache else []
    cfg = load_config(None, [f"data.name={args.name}", f"data.path={args.data}", f"model.image_size={args.size}",
                             f"model.channels={args.channels}", *cache])
    stats.NDB_BINS = args.bins
    labelled = sources.load_dataset(cfg, progress=False)
    hidden = dataclasses.replace(labelled, labels=None, class_names=None)
    started = time.perf_counter()
    spaces = {"rotation": scoring.reference(hidden, "rotation", cfg=cfg, progress=False, log=quiet)}
    print(f"rotation reference ready in {time.perf_counter() - started:.1f} s", flush=True)
    spaces["domain"] = scoring.reference(labelled, "domain", cfg=cfg, progress=False, log=quiet)
    _, held_out = domain.split(len(hidden.images), dataset_key(hidden))
    real = hidden.images[np.sort(held_out)]
    two = labelled.images[np.isin(labelled.labels, TWO_CLASSES)][:len(real)]
    sets = {"real, held out": real, "real, blurred": blurred(real), "real, two classes": two,
            "uniform noise": np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)}
    print(f"{labelled.source} at {args.size}x{args.size}x{args.channels}, {len(real):,} images a set; "
          f"{spaces['rotation'].extractor.describe()}")
    print("| set | FD (rotation) | NDB/K | bins covered | precision | recall | FD (domain) |")
    print("|---|---|---|---|---|---|---|")
    for name, images in sets.items():
        s = {space: scoring.score(ref, [images], total=len(images), generated=name, progress=False)["scores"]
             for space, ref in spaces.items()}
        r = s["rotation"]
        print(f"| {name} | {r['frechet_distance']:.3f} | {r['ndb_k']:.2f} | {r['bins_covered']} of {r['bins']} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {s['domain']['frechet_distance']:.2f} |", flush=True)


def rank(args: argparse.Namespace) -> None:
    label_free, labelled, names, per_run = [], [], [], []
    for run in args.runs:
        first = len(names)
        found = checkpoint.complete(Path(run))
        print(f"{run}: {len(found)} checkpoints", flush=True)
        for path in found:
            row = {}
            for space in ("rotation", "domain"):
                _, result = scoring.evaluate_checkpoint(path, count=args.n, features=space, seed=0, progress=False,
                                                        log=quiet)
                row[space] = result["scores"]
            step = checkpoint.read_state(path)["step"]
            names.append(f"{Path(run).name}@{step}")
            label_free.append(row["rotation"]["frechet_distance"])
            labelled.append(row["domain"]["frechet_distance"])
            print(json.dumps({"checkpoint": names[-1], "rotation_fd": round(label_free[-1], 4),
                              "domain_fd": round(labelled[-1], 3), "bins_covered": row["rotation"]["bins_covered"],
                              "ndb_k": row["rotation"]["ndb_k"], "modes": row["domain"]["modes_covered"]}),
                  flush=True)
        rho = scipy_stats.spearmanr(label_free[first:], labelled[first:])
        per_run.append(f"{run}: {rho.statistic:.3f} over {len(names) - first}")
    print("Spearman rank correlation of the label-free and the labelled FD, per run: " + "; ".join(per_run))
    rho = scipy_stats.spearmanr(label_free, labelled)
    print(f"... over all {len(names)} checkpoints together: "
          f"{rho.statistic:.3f} (p = {rho.pvalue:.2g})")


def floor(args: argparse.Namespace) -> None:
    found = [path for run in args.runs for path in checkpoint.complete(Path(run))]
    cfg = scoring.checkpoint_config(found[0], [])
    dataset = sources.load_dataset(cfg, progress=False)
    fakes = []
    for path in found:
        _, g = checkpoint.load_generator(path)
        latents = scoring.drawn_latents(cfg, args.n, np.random.default_rng(0))
        fakes.append(np.concatenate([generate(g, z, cfg) for z in latents]))
    print(f"{len(found)} checkpoints of {', '.join(args.runs)}, {args.n:,} images each", flush=True)
    full = domain.load_or_train(dataset, cache_dir=cfg.data.cache_dir, progress=False, log=quiet)
    reference = [_fd(lambda x: full(x), full.real, images) for images in fakes]
    print("| classifier | held-out accuracy | skill | Spearman with the full classifier's FD |")
    print("|---|---|---|---|")
    key = dataset_key(dataset)
    train, test = domain.split(len(dataset.images), key)
    test = np.sort(test)
    classes = int(dataset.labels.max()) + 1
    for epochs in (int(e) for e in args.epochs.split(",")):
        rng = np.random.default_rng(key_seed(key))
        trainer, model = network.build(dataset.images.shape[1:], classes, rng, name="weak")
        domain.train_epochs(trainer, dataset.images, dataset.labels, train, rng, epochs=epochs, shift=0,
                            progress=False)
        hits = network.correct(trainer, np.asarray(dataset.images[test]), dataset.labels[test])
        weak = domain.DomainFeatures(model=model, accuracy=hits / len(test), held_out=len(test), chance=full.chance,
                                     epochs=epochs, seconds=0.0, class_names=(), real=None, cache=Path("-"))
        extract = lambda x: network.predict(model, x)  # noqa: E731
        real = summarise(extract, [np.asarray(dataset.images)], batch_size=500, total=len(dataset.images),
                         progress=False, description="real")
        values = [_fd(extract, real, images) for images in fakes]
        rho = scipy_stats.spearmanr(values, reference).statistic
        print(f"| {epochs} epochs, no augmentation | {weak.accuracy:.1%} | {weak.skill():.2f} | {rho:.3f} |",
              flush=True)
    print(f"| the cached classifier ({full.epochs} epochs) | {full.accuracy:.1%} | {full.skill():.2f} | 1 |")


def _fd(extract, real: stats.Summary, images: np.ndarray) -> float:
    summary = summarise(extract, [images], batch_size=500, total=len(images), progress=False, description="fake")
    return stats.frechet_distance(summary.mean, summary.covariance, real.mean, real.covariance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sets = commands.add_parser("sets", help="real, blurred, two classes and noise against a dataset")
    sets.add_argument("--data", required=True, help="a labelled folder, or MNIST's IDX folder with --name mnist")
    sets.add_argument("--name", default="folder", choices=("folder", "mnist", "cifar10"))
    sets.add_argument("--size", type=int, default=32)
    sets.add_argument("--channels", type=int, default=3, choices=(1, 3))
    sets.add_argument("--cache", help="data.cache_dir [default: the usual cache]")
    sets.add_argument("--bins", type=int, default=stats.NDB_BINS, help="NDB's k-means bins")
    ranking = commands.add_parser("rank", help="label-free against labelled FD over the checkpoints of runs")
    ranking.add_argument("runs", nargs="+")
    ranking.add_argument("--n", type=int, default=2000, help="images scored per checkpoint")
    weak = commands.add_parser("floor", help="weaker classifiers' FD against the cached one's over checkpoints")
    weak.add_argument("runs", nargs="+")
    weak.add_argument("--epochs", default="1,2,3,5", help="the weaker classifiers' epochs, comma-separated")
    weak.add_argument("--n", type=int, default=2000, help="images scored per checkpoint")
    args = parser.parse_args()
    {"sets": score_sets, "rank": rank, "floor": floor}[args.command](args)


if __name__ == "__main__":
    main()
