"""`dcgan evaluate` and output.eval_every: domain and Inception scores, the best checkpoint, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image, ImageFilter

from dcgan_cli.state import checkpoint
from dcgan_cli.data import sources
from dcgan_cli.training import train
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.evaluate import domain, scoring
from dcgan_cli.evaluate.features import EvaluationError, dataset_key, summarise

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_T10K = SHARED / "mnist-t10k"
CIFAR10_TEST = SHARED / "cifar10-test"
DIGITS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def batches(images: np.ndarray, size: int = 500):
    return (images[i:i + size] for i in range(0, len(images), size))


def weights(run: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / name / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


# ------------------------------------------------------------------ domain score on real MNIST


@pytest.fixture(scope="module")
def mnist():
    if not MNIST_T10K.is_dir():
        pytest.skip("../shared/data/mnist-t10k is not here")
    cfg = load_config(None, ["data.name=mnist", f"data.path={MNIST_T10K}", "model.image_size=28"])
    dataset = sources.load_dataset(cfg, progress=False)
    ref = scoring.reference(dataset, "domain", cfg=cfg, progress=False, log=lambda message: None)
    return cfg, dataset, ref


def score_of(ref, images: np.ndarray) -> dict:
    return scoring.score(ref, batches(images), total=len(images), generated="test", progress=False)


@pytest.mark.e2e  # trains a classifier on 10,000 real digits
def test_domain_score_ranks_real_above_blurred_above_two_classes_above_noise(mnist):
    cfg, dataset, ref = mnist
    assert ref.extractor.accuracy >= 0.95 and ref.extractor.held_out == 1500
    _, held_out = domain.split(len(dataset.images), dataset_key(dataset))
    real = dataset.images[held_out]  # never seen by the classifier
    blurred = np.stack([np.asarray(Image.fromarray(image[..., 0]).filter(ImageFilter.GaussianBlur(1.5)))[..., None]
                        for image in real])
    two = dataset.images[np.isin(dataset.labels, [3, 7])][:1500]
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    results = {name: score_of(ref, images) for name, images in
               [("real", real), ("blurred", blurred), ("two classes", two), ("noise", noise)]}
    fd = {name: result["scores"]["frechet_distance"] for name, result in results.items()}
    assert fd["real"] < fd["blurred"] < fd["two classes"] < fd["noise"], fd
    assert results["real"]["scores"]["modes_covered"] == 10
    assert results["two classes"]["scores"]["modes_covered"] == 2
    assert results["two classes"]["scores"]["covered_classes"] == ["3", "7"]
    assert results["real"]["scores"]["class_kl"] < 0.01 < results["two classes"]["scores"]["class_kl"]
    assert results["real"]["scores"]["mean_confidence"] > results["noise"]["scores"]["mean_confidence"]
    assert results["real"]["scores"]["recall"] > 2 * results["two classes"]["scores"]["recall"]
    for result in results.values():
        assert result["images"] == 1500 and "10,000 real images, 28x28x1" in result["real_set"]
        assert "held-out accuracy" in result["feature_space"]


def test_the_classifier_is_cached_by_the_datasets_content(tiny_scores, monkeypatch):
    cfg, dataset, ref = tiny_scores
    monkeypatch.setattr(domain, "_train", lambda *args, **kwargs: pytest.fail("the cached classifier is reused"))
    again = domain.load_or_train(dataset, cache_dir=cfg.data.cache_dir, progress=False)
    assert again.cache == ref.extractor.cache and again.accuracy == ref.extractor.accuracy
    np.testing.assert_array_equal(again.real.mean, ref.real.mean)
    changed = sources.Dataset(images=dataset.images[:900], labels=dataset.labels[:900], class_names=None,
                              source="first half")
    assert dataset_key(changed) != dataset_key(dataset)


def test_below_either_floor_scores_are_refused(tiny_scores):
    cfg, _, ref = tiny_scores
    with pytest.raises(EvaluationError, match=r"eval_min_accuracy: .*held-out accuracy.*below the floor of 100%.*"
                                              r"Received: 1.0"):
        ref.extractor.check(min_accuracy=1.0, min_skill=0.0)
    skill = ref.extractor.skill()
    assert 0.9 < skill < (ref.extractor.accuracy - ref.extractor.chance) / (1 - ref.extractor.chance) < 1
    with pytest.raises(EvaluationError, match=r"eval_min_skill: .*too close to chance \(12\.2%, the largest class\)"
                                              r".*Received: 0.99"):
        ref.extractor.check(min_accuracy=0.0, min_skill=0.99)
    ref.extractor.check(min_accuracy=cfg.output.eval_min_accuracy, min_skill=cfg.output.eval_min_skill)


def test_skill_is_measured_against_chance_and_the_held_out_sets_size():
    def classifier(accuracy: float, held_out: int, chance: float) -> domain.DomainFeatures:
        return domain.DomainFeatures(model=None, accuracy=accuracy, held_out=held_out, chance=chance, epochs=1,
                                     seconds=0.0, class_names=(), real=None, cache=Path("x"))

    assert classifier(0.1, 1500, 0.1).skill() < 0 < classifier(0.2, 1500, 0.1).skill()
    assert classifier(0.67, 1500, 0.125).skill() == pytest.approx(0.595, abs=0.01)  # CIFAR-10's test set
    assert classifier(0.67, 60, 0.125).skill() < classifier(0.67, 1500, 0.125).skill() - 0.1, "a small set: wider"
    assert classifier(0.55, 1500, 0.5).skill() < 0.1 < classifier(0.55, 1500, 0.1).skill(), "two classes vs ten"


# ------------------------------------------------------------------ feature extraction


def test_features_are_extracted_at_most_batch_size_images_at_a_time():
    seen = []

    def extract(images):
        seen.append(len(images))
        return images.reshape(len(images), -1).astype(np.float32), np.full((len(images), 2), 0.5)

    images = np.random.default_rng(0).integers(0, 256, (10, 2, 2, 1), dtype=np.uint8)
    summary = summarise(extract, [images[:7], images[7:]], batch_size=4, total=10, progress=False, description="t")
    assert seen == [4, 3, 3] and summary.count == 10 and summary.histogram.sum() == 10
    np.testing.assert_allclose(summary.mean, images.reshape(10, -1).mean(axis=0))


def image_folder(root: Path, images: np.ndarray) -> Path:
    root.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(root / f"{i:03d}.png")
    return root


def yaml_file(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


# ------------------------------------------------------------------ during training: output.eval_every


EVAL = ["output.eval_every=1", "output.eval_samples=50", "output.checkpoint_every=1", "output.keep_checkpoints=1"]


def test_scoring_that_would_take_over_a_fifth_of_the_run_is_warned_of_once_with_a_cadence_that_would_not():
    from types import SimpleNamespace
    from dcgan_cli.training.upkeep import BestKeeper

    cfg = load_config(None, ["train.steps=1000", "output.eval_every=100"])
    scorer = SimpleNamespace(cfg=cfg, reference=SimpleNamespace(features="fid"))
    said: list[str] = []
    keeper = BestKeeper(scorer, Path("unused"), resume=False, start=0, log=said.append)
    keeper.clock = (0, 0.0)
    keeper._warn_if_costly(100, seconds=2.0, now=10.0)  # 100 s of steps, 10 scores of 2 s: 17%
    assert said == [] and keeper.clock is None
    keeper.clock = (0, 0.0)
    keeper._warn_if_costly(100, seconds=10.0, now=10.0)  # 10 scores of 10 s: half the run
    assert len(said) == 1 and "one score in fid features takes 10.0 s" in said[0] and "50%" in said[0]
    assert "set output.eval_every to 500 or more" in said[0]  # 2 scores of 10 s: 20 s of 120 s
    keeper.clock = (200, 0.0)  # resumed at step 200: the pace is of the steps since
    keeper._warn_if_costly(300, seconds=200.0, now=10.0)
    assert "set output.eval_every to 0" in said[-1]


def test_eval_every_keeps_the_best_through_rotation_and_resume(tmp_path, tiny_overrides):
    whole = train.run(load_config(None, [*tiny_overrides, *EVAL, "train.steps=6"]), run_dir=tmp_path / "whole")
    lines = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    scored = {line["step"]: line["eval"] for line in lines if "eval" in line}
    assert sorted(scored) == [1, 2, 3, 4, 5, 6]
    assert all(entry["images"] == 50 and entry["features"] == "domain" and "scikit-learn digits" in entry["real_set"]
               for entry in scored.values())
    best_step = min(scored, key=lambda step: scored[step]["frechet_distance"])
    assert [step for step, entry in scored.items() if entry["best"]][-1] == best_step
    assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == ["best", "step_000006"]
    best = checkpoint.best_score(whole)
    assert best["step"] == best_step and best["value"] == scored[best_step]["frechet_distance"]
    assert best["result"]["images"] == 50

    part = train.run(load_config(None, [*tiny_overrides, *EVAL, "train.steps=3"]), run_dir=tmp_path / "part")
    before = checkpoint.best_score(part)
    train.run(load_config(None, [*tiny_overrides, *EVAL, "train.steps=6"]), run_dir=part, resume=True)
    after = checkpoint.best_score(part)
    assert after["step"] == best_step and after["value"] <= before["value"]
    assert (part / "checkpoints" / "best" / "COMPLETE").is_file()
    a, b = weights(whole, "best"), weights(part, "best")
    assert all(np.array_equal(a[key], b[key]) for key in a), "the resumed run keeps the same best, bit for bit"


def test_scoring_during_training_does_not_change_the_training(tmp_path, tiny_overrides, plain_run):
    plain = plain_run("train_on_batch")
    scored = train.run(load_config(None, [*tiny_overrides, "train.steps=3", "output.eval_every=2",
                                          "output.eval_samples=20"]), run_dir=tmp_path / "scored")
    a, b = weights(plain, "step_000003"), weights(scored, "step_000003")
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert (scored / "checkpoints" / "best").is_dir() and not (plain / "checkpoints" / "best").exists()


def test_the_compiled_loop_scores_its_current_weights(tmp_path, tiny_overrides):
    """Scores at steps without a checkpoint or a grid must see the compiled loop's state, not stale variables."""
    scores = {}
    for loop in ("train_on_batch", "compiled"):
        cfg = load_config(None, [*tiny_overrides, "train.steps=3", f"train.loop={loop}", "output.eval_every=1",
                                 "output.eval_samples=50", "output.checkpoint_every=3", "output.sample_every=3"])
        run = train.run(cfg, run_dir=tmp_path / loop)
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        scores[loop] = [line["eval"]["frechet_distance"] for line in lines if "eval" in line]
    assert len(scores["compiled"]) == 3 and len(set(scores["compiled"])) == 3
    assert scores["compiled"] == pytest.approx(scores["train_on_batch"], rel=1e-3)


def test_a_crash_while_replacing_the_best_checkpoint_keeps_the_old_one(tmp_path):
    parent = tmp_path / "checkpoints"
    (parent / ".old-best").mkdir(parents=True)
    (parent / ".old-best" / "COMPLETE").write_text("step 5\n")
    checkpoint.remove_temporaries(tmp_path)
    assert (parent / "best" / "COMPLETE").read_text() == "step 5\n" and not (parent / ".old-best").exists()


@pytest.mark.parametrize("data, extra, message", [
    ({"name": "npy"}, ["output.eval_features=domain"], "output.eval_features: domain features need class labels"),
    ({}, ["output.eval_features=domain", "output.eval_min_accuracy=1.0"],
     "output.eval_min_accuracy: the domain classifier reaches only"),
])
def test_eval_every_that_cannot_score_is_refused_before_anything_is_written(tmp_path, tiny_overrides, data, extra,
                                                                          message):
    array = tmp_path / "faces.npy"
    np.save(array, np.zeros((20, 16, 16), np.uint8))
    config = yaml_file(tmp_path / "data.yaml", {"data": {**data, "path": str(array)} if data else {}})
    result = invoke("train", "--config", config, "--run-dir", tmp_path / "run",
                    *[arg for o in [*tiny_overrides, "output.eval_every=2", *extra] for arg in ("--set", o)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from conftest import TINY

    run = tmp_path_factory.mktemp("trained") / "run"
    return train.run(load_config(None, [*TINY, *EVAL]), run_dir=run)


def test_evaluate_a_checkpoint_writes_eval_json_and_prints_each_score_with_its_space(trained):
    result = invoke("evaluate", "--checkpoint", trained, "--n", 300, "--seed", 3)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "300 images (generated by" in text and "step 4, latent seed 3" in text
    assert "against scikit-learn digits: 1,797 real images, 16x16x1" in text
    assert "Frechet distance (domain)" in text and "modes covered" in text and "precision, recall (k=3, domain)" in text
    recorded = json.loads((trained / "checkpoints" / "step_000004" / "eval.json").read_text())["domain"]
    assert recorded["images"] == 300 and recorded["scores"]["classes"] == 10
    same = invoke("evaluate", "--checkpoint", trained, "--n", 300, "--seed", 3, "--json")
    assert json.loads(same.stdout)["scores"] == recorded["scores"], "the same seed gives the same score"


def test_sample_and_evaluate_accept_the_best_checkpoint(trained, tmp_path):
    best = trained / "checkpoints" / "best"
    assert invoke("sample", "--checkpoint", best, "--n", 4, "--out", tmp_path / "best.png").exit_code == 0
    result = invoke("evaluate", "--checkpoint", best, "--n", 50, "--json", "--out", tmp_path / "scores.json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generated"].startswith(f"generated by {best}, step")
    assert "domain" in json.loads((tmp_path / "scores.json").read_text())


@pytest.mark.parametrize("args, message", [
    ([], "give either --checkpoint PATH or --images DIR"),
    (["--images", "."], "--images needs --config"),
    (["--checkpoint", "{run}", "--config", "x.yaml"], "--config is for --images"),
    (["--checkpoint", "{run}", "--n", "5"], "5 is not in the range x>=10"),
    (["--checkpoint", "{run}", "--set", "model.image_size=32"], "only data.*, output.eval_min_accuracy and"),
    (["--checkpoint", "{run}", "--features", "domain", "--set", "output.eval_min_accuracy=1.0"],
     "below the floor of 100%"),
    (["--checkpoint", "{run}", "--features", "domain", "--set", "output.eval_min_skill=1.0"],
     "output.eval_min_skill: the domain classifier's held-out accuracy"),
    (["--checkpoint", "{run}", "--set", "data.path=/nowhere", "--set", "data.name=npz"],
     "data.path: no such file. Received: '/nowhere'"),
    (["--checkpoint", "nowhere"], "no such checkpoint or run directory"),
])
def test_evaluate_mistakes_exit_2_with_one_clear_message(trained, args, message):
    result = invoke("evaluate", *[arg.format(run=trained) for arg in args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_domain_features_on_a_dataset_without_labels_say_so(tmp_path):
    array = tmp_path / "faces.npy"
    np.save(array, np.zeros((20, 16, 16), np.uint8))
    config = yaml_file(tmp_path / "faces.yaml", {"data": {"name": "npy", "path": str(array)}})
    folder = image_folder(tmp_path / "pngs", np.zeros((10, 16, 16, 1), np.uint8))
    result = invoke("evaluate", "--images", folder, "--config", config, "--features", "domain")
    assert result.exit_code == 2 and "--features: domain features need class labels" in result.output
    assert "rotation features, which need no labels" in result.output and "Received: domain" in result.output
