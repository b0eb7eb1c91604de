"""Scoring images against the real data: what `dcgan evaluate`, `dcgan ablate` and the training loop call.

A Reference is one feature space over one real set (its extractor, the real images' summary and NDB bins, cached);
score() runs the extractor over a stream of uint8 image batches (a generator's or a folder's) and returns a result
that names the feature space, the number of images and the real set beside every score. The feature space is
asked for by name (--features, output.eval_features): domain (class labels), rotation (no labels), fid (the
standard Inception network of published FIDs), or auto, which takes domain where the data has usable class labels
and rotation otherwise, so every dataset can be scored. What cannot be scored is found before any image is
decoded where the file names tell (preflight).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import keras
import numpy as np

from dcgan_cli.state import checkpoint
from dcgan_cli.data import sources
from dcgan_cli.nets import hacks
from dcgan_cli.config import Config, ConfigError, load_config
from dcgan_cli.data import folder
from dcgan_cli.data.common import Dataset, cache_root
from dcgan_cli.evaluate import domain, fid, rotation, stats
from dcgan_cli.evaluate.features import (PRIMARY, EvaluationError, cached_summary, dataset_key, image_batches,
                                         load_arrays, real_order, save_arrays, summarise)
from dcgan_cli.files import exclusive, to_stderr
from dcgan_cli.nets.models import Classes, generate

GENERATE_BATCH = 250  # latents turned into images at a time
KID_SEED = 0  # KID's subsets come from a generator seeded with this, so a score does not depend on the run
SCORES_FILE = "eval.json"
RAW_SCORES_FILE = "eval-raw.json"  # --raw on a checkpoint with a moving average: G's trained weights
EVAL_STREAM = 1  # output.eval_every's fixed latents: numpy's generator seeded with [train.seed, EVAL_STREAM]
CLASS_STREAM = 7  # dcgan evaluate: a class-conditional G's classes come from [--seed, CLASS_STREAM]


@dataclass(frozen=True)
class Reference:
    """One feature space over one real set: the extractor, the real images' summary and NDB bins, and what to
    call them."""

    features: str  # "domain", "rotation" or "fid"
    extractor: domain.DomainFeatures | rotation.RotationFeatures | fid.StandardInception
    real: stats.Summary
    real_set: str  # e.g. "scikit-learn digits: 1,797 real images, 16x16x1"
    class_names: tuple[str, ...] = ()  # the domain classifier's classes
    bins: stats.Bins | None = None  # NDB's k-means bins of the real features (None for a tiny real set)

    @property
    def primary(self) -> str:
        """The score that ranks generators in this space (lower is better)."""
        return PRIMARY[self.features]


def describe_real(dataset: Dataset, used: int) -> str:
    """The real set a score was measured against, with its size and image shape."""
    _, h, w, c = dataset.images.shape
    count = f"{used:,} real images" if used == len(dataset.images) else \
        f"{used:,} of {len(dataset.images):,} real images (a fixed shuffle)"
    return f"{dataset.source}: {count}, {h}x{w}x{c}"


def preflight(cfg: Config, features: str, *, key: str) -> None:
    """Refuse a feature space that cannot score this config's data before any image is decoded: domain features
    where the file names already show there are no class labels, fid features without the extra that holds their
    network. `key` names the option that asked (--features, output.eval_features)."""
    if features == "domain" and sources.probe_labels(cfg) is False:
        raise EvaluationError(_unlabelled(key, cfg.data.path or cfg.data.name))
    if features == "fid":
        fid.locate()


def _unlabelled(key: str, source: str) -> str:
    return (f"{key}: domain features need class labels, and {source} has none (a folder needs one subfolder per "
            f"class, at least two; an .npz an array 'y'); score in rotation features, which need no labels "
            f"(rotation, or auto to choose by the data). Received: domain")


def reference(dataset: Dataset, features: str, *, cfg: Config, progress: bool = True,
              log: Callable[[str], None] = to_stderr, key: str = "--features") -> Reference:
    """The reference of `features` for this dataset, from the cache where it was measured before.

    auto: domain where the dataset has labels of two classes or more and its classifier passes the floors, else
    rotation (said in one line when the classifier was refused).
    domain: the dataset's classifier (trained now when not cached), refused below output.eval_min_skill and
    output.eval_min_accuracy. rotation: the dataset's rotation network. fid: the standard Inception network, its
    reference statistics cached beside the data cache under the dataset's key.
    """
    if features == "auto":
        if dataset.labels is not None and len(np.unique(dataset.labels)) >= 2:
            try:
                return reference(dataset, "domain", cfg=cfg, progress=progress, log=log, key=key)
            except EvaluationError as error:
                log(f"scoring in rotation features instead of domain features: {error}")
        features = "rotation"
    names: tuple[str, ...] = ()
    if features == "domain":
        if dataset.labels is None:
            raise EvaluationError(_unlabelled(key, dataset.source))
        extractor = domain.load_or_train(dataset, cache_dir=cfg.data.cache_dir, progress=progress, log=log)
        extractor.check(min_accuracy=cfg.output.eval_min_accuracy, min_skill=cfg.output.eval_min_skill)
        real, names, cache = extractor.real, extractor.class_names, extractor.cache
    elif features == "rotation":
        extractor = rotation.load_or_train(dataset, cache_dir=cfg.data.cache_dir, progress=progress, log=log)
        real, cache = extractor.real, extractor.cache
    else:
        extractor = fid.StandardInception()
        content = dataset_key(replace(dataset, labels=None))  # FID never reads labels: one reference per folder
        order = real_order(len(dataset.images), content)
        cache = cache_root(cfg.data.cache_dir) / f"fid-{content}-{extractor.key}.npz"
        real = cached_summary(cache, lambda: summarise(
            extractor, image_batches(dataset.images, order, extractor.batch_size), batch_size=extractor.batch_size,
            total=len(order), progress=progress, description="real images, FID features"),
            {"source": dataset.source, "images": len(order), "protocol": fid.PROTOCOL})
    return Reference(features=features, extractor=extractor, real=real, class_names=names,
                     real_set=describe_real(dataset, real.count), bins=real_bins(real, cache))


def statistics_reference(path: Path) -> Reference:
    """The fid reference of a user's precomputed statistics (--reference FILE.npz: mu and sigma); FID alone is
    scored against it, since it holds no feature vectors."""
    real = fid.load_statistics(path)
    return Reference(features="fid", extractor=fid.StandardInception(), real=real,
                     real_set=f"the statistics in {path} (mu and sigma; their images are not known here)")


def real_bins(real: stats.Summary, cache: Path) -> stats.Bins | None:
    """NDB's k-means bins of the real features, cached beside the feature space's cache file (None when the real
    set is too small for two bins)."""
    k = stats.bin_count(len(real.kept))
    if not k:
        return None
    path = cache.with_name(f"{cache.stem}-bins{k}.npz")
    with exclusive(path):
        found = load_arrays(path)
        if found is not None:
            return stats.Bins.from_arrays(found[0])
        bins = stats.make_bins(real.kept, k)
        save_arrays(path, bins.to_arrays(), {"bins": k, "real_vectors": len(real.kept)})
        return bins


def compare(features: str, samples: stats.Summary, real: stats.Summary, class_names: tuple[str, ...] = (), *,
            bins: stats.Bins | None = None, progress: bool = False) -> dict[str, float | int | list[str]]:
    """The scores of a summary of images against the real one, in the given feature space (the domain's classes
    named by `class_names`; NDB over `bins` where given)."""
    fd = stats.frechet_distance(samples.mean, samples.covariance, real.mean, real.covariance)
    if features == "fid" and not len(real.kept):
        return {"fid": fd}  # precomputed statistics: no real vectors for KID, NDB, precision or recall
    pr_count = min(len(samples.kept), len(real.kept))
    precision, recall = stats.precision_recall(real.kept[:pr_count], samples.kept[:pr_count], progress=progress)
    pr = {"precision": precision, "recall": recall, "nearest_k": stats.NEAREST_K, "pr_images": pr_count}
    binned = stats.ndb(bins, samples.kept) if bins is not None else {}
    if features == "domain":
        classes = stats.class_scores(samples.histogram, real.histogram, samples.confidence_sum, class_names)
        return {"frechet_distance": fd, **classes, "mode_share": stats.MODE_SHARE, **binned, **pr}
    if features == "rotation":
        return {"frechet_distance": fd, **binned, **pr}
    kid, kid_std, subset = stats.kid(real.kept, samples.kept, np.random.default_rng(KID_SEED), progress=progress)
    return {"fid": fd, "kid": kid, "kid_std": kid_std, "kid_subsets": stats.KID_SUBSETS, "kid_subset_size": subset,
            **binned, **pr}


def score(ref: Reference, batches: Iterable[np.ndarray], *, total: int, generated: str,
          progress: bool = True) -> dict:
    """Score uint8 image batches (about `total` images) against the reference; `generated` says where they came
    from. Returns the result as JSON-ready data ("seconds": the time this scoring took)."""
    started = time.perf_counter()
    samples = summarise(ref.extractor, batches, batch_size=ref.extractor.batch_size, total=total, progress=progress,
                        description=f"{ref.features} features")
    result = {
        "features": ref.features,
        "feature_space": ref.extractor.describe(),
        "images": samples.count,
        "generated": generated,
        "real_set": ref.real_set,
        "real_images": ref.real.count,
        "scores": compare(ref.features, samples, ref.real, ref.class_names, bins=ref.bins, progress=progress),
    }
    if ref.features == "domain":
        result["classifier"] = {"held_out_accuracy": ref.extractor.accuracy, "held_out_images": ref.extractor.held_out,
                                "chance": ref.extractor.chance, "skill": round(ref.extractor.skill(), 4),
                                "cache": str(ref.extractor.cache)}
    elif ref.features == "rotation":
        result["rotation_network"] = {"held_out_accuracy": ref.extractor.accuracy,
                                      "held_out_images": ref.extractor.held_out, "cache": str(ref.extractor.cache)}
    else:
        result["protocol"] = {**fid.PROTOCOL, "generated_images": samples.count, "reference": ref.real_set,
                              "reference_images": ref.real.count or None}
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def generated_batches(g: keras.Model, cfg: Config, latents: Iterable[np.ndarray],
                      classes: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """G's uint8 images (inference mode) for each batch of latents; a class-conditional G (hack 21) draws the
    images of `classes` (int (total,), consumed in the batches' order)."""
    start = 0
    for z in latents:
        yield generate(g, z, cfg, None if classes is None else classes[start:start + len(z)])
        start += len(z)


def drawn_classes(classes: Classes | None, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """`count` classes for a class-conditional G's samples, drawn as often as the data has them (so that they are
    scored against the data's own mix); None for an unconditional G."""
    return None if classes is None else classes.drawn(rng, count)


def drawn_latents(cfg: Config, count: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`count` latents from `rng` (hack 8's distribution), GENERATE_BATCH at a time."""
    for start in range(0, count, GENERATE_BATCH):
        yield hacks.sample_latent(rng, min(GENERATE_BATCH, count - start), cfg.model.latent_dim, hacks=cfg.hacks)


def folder_images(root: Path, cfg: Config, *, limit: int | None,
                  log: Callable[[str], None] = to_stderr) -> tuple[Iterator[np.ndarray], int]:
    """The images under `root` (as data.name folder reads them, sized to the config, not cached) as uint8 batches,
    and how many files there are."""
    if not root.is_dir():
        raise EvaluationError(f"--images: no such folder. Received: {str(root)!r}")
    files = folder.list_images(root)[:limit]
    if not files:
        raise EvaluationError(f"--images: no image files ({', '.join(e[1:] for e in folder.EXTENSIONS)}) under "
                              f"this folder. Received: {str(root)!r}")

    def batches() -> Iterator[np.ndarray]:
        readable = np.zeros(len(files), dtype=bool)
        for start, images, ok in folder.decode_chunks(root, files, size=cfg.model.image_size,
                                                      channels=cfg.model.channels, progress=False):
            readable[start:start + len(images)] = ok
            if ok.any():
                yield images[ok]
        folder.report_unreadable(root, files, readable, log=log, key="--images")

    return batches(), len(files)


# ------------------------------------------------------------------ what `dcgan evaluate` runs


EVALUATE_KEYS = ("data.", "output.eval_min_accuracy", "output.eval_min_skill")  # what --set may change when
#                                                                                 scoring a checkpoint


def checkpoint_config(found: Path, overrides: Iterable[str]) -> Config:
    """A checkpoint's config with --set overrides of its data section (the data may have moved) and the accuracy
    floors; the generator itself is the checkpoint's, so nothing else may change."""
    refused = [o for o in overrides if not o.strip().startswith(EVALUATE_KEYS)]
    if refused:
        raise ConfigError([f"--set {o}: scoring a checkpoint, only data.*, output.eval_min_accuracy and "
                           f"output.eval_min_skill can be set (the generator is the checkpoint's). Received: {o!r}"
                           for o in refused])
    return load_config(found / "config.yaml", overrides, saved=True)


def _space(cfg: Config, features: str | None, statistics: Path | None) -> tuple[str, str]:
    """The feature space asked for (--features, else the config's output.eval_features) and the option that asked,
    checked by preflight before the data is read; precomputed statistics (--reference) are of the fid space."""
    key = "--features" if features else "output.eval_features"
    chosen = features or cfg.output.eval_features
    if statistics is not None and chosen != "fid":
        raise EvaluationError(f"--reference: precomputed statistics are in the fid features; add --features fid. "
                              f"Received: {key} {chosen}")
    preflight(cfg, chosen, key=key)
    return chosen, key


def _reference(cfg: Config, chosen: str, *, key: str, statistics: Path | None, progress: bool,
               log: Callable[[str], None]) -> tuple[Reference, Dataset | None]:
    """The reference to score against (a user's statistics, else the config's data in `chosen`), and the config's
    data where it was read (statistics need none)."""
    if statistics is not None:
        return statistics_reference(statistics), None
    dataset = sources.load_dataset(cfg, progress=progress, log=log)
    return reference(dataset, chosen, cfg=cfg, progress=progress, log=log, key=key), dataset


def evaluate_checkpoint(path: Path, *, count: int, features: str | None, seed: int, overrides: Iterable[str] = (),
                        statistics: Path | None = None, progress: bool = True,
                        log: Callable[[str], None] = to_stderr, raw: bool = False) -> tuple[Path, dict]:
    """Score `count` images of a checkpoint's generator (latents drawn with `seed`; its moving average where it
    holds one, unless `raw`) against its run's training data, or against precomputed fid `statistics`, in
    `features` (else the space its config's output.eval_features names). Returns the checkpoint directory and the
    result."""
    started = time.perf_counter()
    found = checkpoint.resolve(path)
    cfg = checkpoint_config(found, overrides)
    chosen, key = _space(cfg, features, statistics)
    _, g = checkpoint.load_generator(found, raw=raw)
    source = f"the moving average of G in {found}" if checkpoint.has_ema(found) and not raw else str(found)
    step = checkpoint.read_state(found).get("step")
    ref, dataset = _reference(cfg, chosen, key=key, statistics=statistics, progress=progress, log=log)
    classes = checkpoint.saved_classes(found)
    labels = drawn_classes(classes, count, np.random.default_rng([seed, CLASS_STREAM]))
    batches = generated_batches(g, cfg, drawn_latents(cfg, count, np.random.default_rng(seed)), labels)
    result = score(ref, batches, total=count, progress=progress,
                   generated=f"generated by {source}, step {step}, latent seed {seed}")
    if classes is not None:
        dataset = dataset or sources.load_dataset(cfg, progress=progress, log=log)  # statistics read no data
        domain_ref = ref if ref.features == "domain" else reference(dataset, "domain", cfg=cfg, progress=progress,
                                                                    log=log, key="--features")
        rng = np.random.default_rng([seed, CLASS_STREAM, 1])

        def draw(index: int, n: int) -> np.ndarray:
            z = hacks.sample_latent(rng, n, cfg.model.latent_dim, hacks=cfg.hacks)
            batches = (z[i:i + GENERATE_BATCH] for i in range(0, n, GENERATE_BATCH))
            return np.concatenate(list(generated_batches(g, cfg, batches, np.full(n, index, np.int32))))

        result["conditional"] = conditional_scores(domain_ref.extractor, draw, classes, dataset, count=count)
    return found, {**result, "seconds": round(time.perf_counter() - started, 3)}


def conditional_scores(extractor: domain.DomainFeatures, draw: Callable[[int, int], np.ndarray], classes: Classes,
                       dataset: Dataset, *, count: int) -> dict:
    """How well a class-conditional G (hack 21) draws the class it is asked for, in domain features, from
    count // K images per class (`draw(index, n)`: n uint8 images asked for class `index`): the share of each
    class's images the domain classifier calls that class (conditional accuracy, overall and per class), and the
    Frechet distance of each class's images to that class's real images (intra-class FD, and their mean)."""
    per = max(2, count // classes.count)
    accuracy, distances = {}, {}

    def summary(images: np.ndarray, what: str) -> stats.Summary:
        return summarise(extractor, [images], batch_size=extractor.batch_size, total=len(images), progress=False,
                         description=what)

    for index, name in enumerate(classes.names):
        fakes = summary(draw(index, per), f"generated {name}")
        accuracy[name] = float(fakes.histogram[index] / fakes.count)  # the share classified as asked
        real = summary(dataset.images[np.flatnonzero(dataset.labels == index)], f"real {name}")
        distances[name] = stats.frechet_distance(fakes.mean, fakes.covariance, real.mean, real.covariance)
    return {"per_class": per, "conditional_accuracy": float(np.mean(list(accuracy.values()))),
            "class_accuracy": accuracy, "intra_fd": float(np.mean(list(distances.values()))),
            "class_fd": distances}


def evaluate_images(root: Path, cfg: Config, *, limit: int | None, features: str | None,
                    statistics: Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = to_stderr) -> dict:
    """Score the images of a folder (made by any tool; sized to the config's model) against the config's data, or
    against precomputed fid `statistics`."""
    started = time.perf_counter()
    chosen, key = _space(cfg, features, statistics)
    batches, total = folder_images(root, cfg, limit=limit, log=log)
    ref, _ = _reference(cfg, chosen, key=key, statistics=statistics, progress=progress, log=log)
    result = score(ref, batches, total=total, progress=progress, generated=f"images in {root}")
    return {**result, "seconds": round(time.perf_counter() - started, 3)}


# ------------------------------------------------------------------ during training


class TrainingScorer:
    """output.eval_every: the score of G's images from one fixed latent set (output.eval_samples latents, drawn
    from their own seeded generator, so scoring never changes the training's random draws), in the feature space
    of output.eval_features."""

    def __init__(self, cfg: Config, dataset: Dataset, *, log: Callable[[str], None] = to_stderr):
        self.cfg = cfg
        classes = Classes.of(dataset) if cfg.hacks.class_conditional else None
        self.reference = reference(dataset, cfg.output.eval_features, cfg=cfg, progress=cfg.output.progress,
                                   log=log, key="output.eval_features")
        rng = np.random.default_rng([cfg.train.seed, EVAL_STREAM])
        self.latents = hacks.sample_latent(rng, cfg.output.eval_samples, cfg.model.latent_dim, hacks=cfg.hacks)
        self.classes = drawn_classes(classes, len(self.latents), rng)  # hack 21: the latents' classes

    def __call__(self, g: keras.Model, *, step: int) -> dict:
        """The result for G's current weights (inference mode)."""
        batches = (self.latents[i:i + GENERATE_BATCH] for i in range(0, len(self.latents), GENERATE_BATCH))
        return score(self.reference, generated_batches(g, self.cfg, batches, self.classes), total=len(self.latents),
                     progress=False, generated=f"step {step}, the run's {len(self.latents):,} fixed eval latents")
