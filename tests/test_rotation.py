"""Scores without labels: the rotation network's features, NDB's bins, and no dead end for an unlabelled folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from dcgan_cli.state import checkpoint
from dcgan_cli.data import sources
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.evaluate import domain, rotation, scoring
from dcgan_cli.evaluate.features import dataset_key

from conftest import TINY

CIFAR10_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-test"
DIGITS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def sets(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def digits() -> sources.Dataset:
    return sources.load_dataset(load_config(None, []), progress=False)


def flat_folder(root: Path, images: np.ndarray) -> Path:
    """A folder of PNG files with no subfolders: images without labels, as a user's own folder is."""
    root.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(root / f"{i:04d}.png")
    return root


def test_turned_gives_the_four_quarter_turns_with_their_labels():
    image = np.zeros((1, 4, 4, 1), np.uint8)
    image[0, 0, 0, 0] = 255  # top left
    images, turns = rotation.turned(image)
    assert images.shape == (4, 4, 4, 1) and turns.tolist() == [0, 1, 2, 3]
    corners = [tuple(np.argwhere(images[k, ..., 0])[0]) for k in range(4)]
    assert corners == [(0, 0), (3, 0), (3, 3), (0, 3)], "counter-clockwise: top left, bottom left, ..."


@pytest.fixture
def short_rotation(monkeypatch):
    """The rotation network trained on 10,000 turned images instead of 80,000: 93% rotation accuracy on 600 digits
    instead of 97%, in a third of the time. These tests check caching and choices, not the features' quality."""
    monkeypatch.setattr(rotation, "TURNED_SEEN", 10_000)


@pytest.mark.usefixtures("short_rotation")
def test_rotation_features_train_without_labels_cache_and_reload_and_a_changed_dataset_retrains(tmp_path,
                                                                                               monkeypatch):
    everything = digits()
    dataset = dataclasses.replace(everything, images=everything.images[:600], labels=everything.labels[:600])
    unlabelled = dataclasses.replace(dataset, labels=None, source="digits without labels")
    notes = []
    first = rotation.load_or_train(unlabelled, cache_dir=tmp_path, progress=False, log=notes.append)
    assert first.accuracy > 0.6 and first.held_out == 90 and first.epochs >= 2, "chance is 25%"
    assert any("rotation network: held-out rotation accuracy" in note for note in notes)
    features, probabilities = first(dataset.images[:7])
    assert features.shape == (7, 128) and probabilities is None and np.isfinite(features).all()
    assert first.real.count == 600 and first.real.histogram is None
    assert "rotation accuracy" in first.describe() and "without labels" in first.describe()

    trained = []
    real_train = rotation._train
    monkeypatch.setattr(rotation, "_train", lambda *args, **kwargs: trained.append(1) or real_train(*args, **kwargs))
    again = rotation.load_or_train(dataset, cache_dir=tmp_path, progress=False, log=notes.append)
    assert not trained, "the labels play no part in the cache's key: the same images reuse it"
    assert again.cache == first.cache and again.accuracy == first.accuracy
    np.testing.assert_array_equal(again.real.mean, first.real.mean)
    np.testing.assert_array_equal(again(dataset.images[:7])[0], features)
    changed = dataclasses.replace(unlabelled, images=unlabelled.images[:300])
    third = rotation.load_or_train(changed, cache_dir=tmp_path, progress=False, log=notes.append)
    assert trained == [1] and third.cache != first.cache and third.real.count == 300
    assert len(list(tmp_path.glob("rotation-v*-*-real.npz"))) == 2


# ------------------------------------------------------------------ the ranking on real colour photos


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """2,000 CIFAR-10 test images (200 per class) in one flat folder, read as a user's folder without labels,
    at 16x16, with the class of each kept aside to build the two-class set."""
    if not CIFAR10_TEST.is_dir():
        pytest.skip("../shared/data/cifar10-test is not here")
    root = tmp_path_factory.mktemp("cifar") / "photos"
    root.mkdir()
    classes = sorted(p.name for p in CIFAR10_TEST.iterdir() if p.is_dir())
    for name in classes:
        for file in sorted((CIFAR10_TEST / name).glob("*.jpg"))[:200]:
            (root / f"{name}-{file.name}").symlink_to(file)
    cfg = load_config(None, ["data.name=folder", f"data.path={root}", "model.image_size=16", "model.channels=3"])
    dataset = sources.load_dataset(cfg, progress=False)
    assert dataset.labels is None and len(dataset.images) == 2000
    class_of = np.repeat(np.arange(len(classes)), 200)  # the files sort by class name
    ref = scoring.reference(dataset, "auto", cfg=cfg, progress=False, log=lambda message: None)
    return dataset, class_of, ref


@pytest.mark.e2e  # trains a rotation network on 2,000 real photos
def test_label_free_scores_rank_real_below_blurred_and_two_classes_below_noise(cifar):
    dataset, class_of, ref = cifar
    assert ref.features == "rotation" and ref.bins is not None and len(ref.bins.counts) == 20
    _, held_out = domain.split(len(dataset.images), dataset_key(dataclasses.replace(dataset, labels=None)))
    real = dataset.images[np.sort(held_out)]  # never seen by the rotation network
    blurred = np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.0))) for image in real])
    two = dataset.images[np.isin(class_of, [3, 7])][:len(real)]  # cats and horses only
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    scores = {name: scoring.score(ref, [images], total=len(images), generated=name, progress=False)["scores"]
              for name, images in [("real", real), ("blurred", blurred), ("two classes", two), ("noise", noise)]}
    fd = {name: s["frechet_distance"] for name, s in scores.items()}
    assert fd["real"] < min(fd["blurred"], fd["two classes"]) and max(fd["blurred"], fd["two classes"]) < fd["noise"]
    covered = {name: s["bins_covered"] for name, s in scores.items()}
    ndb = {name: s["ndb"] for name, s in scores.items()}
    assert covered["noise"] < covered["two classes"] < covered["real"], covered
    assert ndb["real"] <= 2 < ndb["two classes"] < ndb["noise"], ndb  # about alpha x K = 1 by chance
    assert scores["real"]["recall"] > scores["noise"]["recall"]


# ------------------------------------------------------------------ no dead end for an unlabelled folder


@pytest.fixture(scope="module")
def unlabelled_folder(tmp_path_factory) -> Path:
    """300 of the digits as a flat folder of PNGs."""
    return flat_folder(tmp_path_factory.mktemp("own") / "pictures", digits().images[:300])


@pytest.mark.e2e
def test_an_unlabelled_folder_trains_with_label_free_scores_and_keeps_the_best(tmp_path, unlabelled_folder):
    run = tmp_path / "run"
    result = invoke("train", "--config", DIGITS_CONFIG, "--run-dir", run,
                    *sets("data.name=folder", f"data.path={unlabelled_folder}", *TINY, "output.eval_every=2",
                          "output.eval_samples=60"))
    assert result.exit_code == 0, result.output
    scored = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "eval" in json.loads(line)]
    assert len(scored) == 2 and all(entry["features"] == "rotation" for entry in scored)
    assert all({"frechet_distance", "ndb", "bins", "bins_covered", "precision", "recall"} <= set(entry)
               for entry in scored)
    best = checkpoint.best_score(run)
    assert best["key"] == "frechet_distance" and best["result"]["features"] == "rotation"
    assert (run / "checkpoints" / "best" / "COMPLETE").is_file()
    evaluated = invoke("evaluate", "--checkpoint", run / "checkpoints" / "best", "--n", 60, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    answer = json.loads(evaluated.stdout)
    assert answer["features"] == "rotation" and answer["rotation_network"]["held_out_images"] == 45
    assert "NDB (rotation)" in invoke("evaluate", "--checkpoint", run, "--n", 60).stdout


@pytest.mark.parametrize("name", sorted(path.name for path in DIGITS_CONFIG.parent.glob("*.yaml")))
def test_every_shipped_config_on_an_unlabelled_folder_passes_the_checks_before_decoding(name, unlabelled_folder):
    """No shipped config asks for labelled features, and only the class-conditional ones for labels (refused
    before decoding, naming data.labels), so every other one's scores resolve to rotation features on a folder
    without class subfolders (the full run is the digits' test above)."""
    cfg = load_config(DIGITS_CONFIG.parent / name, ["data.name=folder", f"data.path={unlabelled_folder}"])
    assert cfg.data.labels == cfg.hacks.class_conditional and sources.probe_labels(cfg) is False
    if cfg.hacks.class_conditional:
        with pytest.raises(sources.DataError, match="data.labels: .* has no class labels"):
            sources.load_dataset(cfg, progress=False)
        return
    scoring.preflight(cfg, cfg.output.eval_features, key="output.eval_features")
    assert cfg.output.eval_features in ("auto", "rotation")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_domain_features_asked_for_on_an_unlabelled_folder_exit_2_before_decoding(tmp_path, unlabelled_folder,
                                                                                command):
    cache = tmp_path / "cache"
    common = ["data.name=folder", f"data.path={unlabelled_folder}", f"data.cache_dir={cache}"]
    if command == "train":
        result = invoke("train", "--config", DIGITS_CONFIG, "--run-dir", tmp_path / "run",
                        *sets(*common, "output.eval_features=domain"))
        key = "output.eval_features"
    else:
        config = tmp_path / "mine.yaml"
        config.write_text(f"data:\n  name: folder\n  path: {unlabelled_folder}\n  cache_dir: {cache}\n")
        result = invoke("evaluate", "--images", unlabelled_folder, "--config", config, "--features", "domain")
        key = "--features"
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{key}: domain features need class labels, and {unlabelled_folder} has none" in result.output
    assert result.output.count("\n") <= 2
    assert not cache.exists(), "nothing was decoded or cached"
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("short_rotation")
def test_auto_scores_a_labelled_folder_whose_classifier_is_refused_in_rotation_features(tmp_path):
    """Subfolders that are not classes (photos sorted by date): the classifier is refused, auto takes rotation."""
    images = digits().images[:240]
    for i, name in enumerate(("2021", "2022", "2023")):
        flat_folder(tmp_path / "photos" / name, images[i::3])
    cfg = load_config(None, ["data.name=folder", f"data.path={tmp_path / 'photos'}", "output.eval_min_skill=0.99"])
    dataset = sources.load_dataset(cfg, progress=False)
    notes = []
    ref = scoring.reference(dataset, "auto", cfg=cfg, progress=False, log=notes.append)
    assert dataset.labels is not None and ref.features == "rotation"
    assert any("scoring in rotation features instead" in note and "output.eval_min_skill" in note for note in notes)
    with pytest.raises(scoring.EvaluationError, match="output.eval_min_skill"):
        scoring.reference(dataset, "domain", cfg=cfg, progress=False, log=notes.append)
