"""Hack 21, class_conditional: G draws a given class and D judges an image with its class (projection or an
auxiliary classifier), in both loops, with the fake classes drawn on the device; the runs resume bit for bit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan_cli.cli import main
from dcgan_cli.config import ConfigError, load_config
from dcgan_cli.data import sources
from dcgan_cli.nets import hacks, losses
from dcgan_cli.nets.models import Classes, build_discriminator, build_generator, build_models
from dcgan_cli.state import checkpoint, draws
from dcgan_cli.training import train

from conftest import TINY, crashed_copy

CONDITIONAL = ["data.labels=true", "hacks.class_conditional=true", "output.checkpoint_every=1",
               "output.keep_checkpoints=4"]


def conditional_cfg(*extra: str):
    return load_config(None, [*TINY, *CONDITIONAL, *extra])


def weights(run: Path, step: int = 4) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"step_{step:06d}" / "weights.npz") as saved:
        return {key: saved[key] for key in saved.files}


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """One tiny conditional run per (loop, conditioning), trained once for the module."""
    made: dict[tuple[str, str, str], Path] = {}

    def get(loop: str, conditioning: str, g_conditioning: str = "batch_norm") -> Path:
        key = loop, conditioning, g_conditioning
        if key not in made:
            cfg = conditional_cfg(f"train.loop={loop}", f"hacks.conditioning={conditioning}",
                                  f"hacks.g_conditioning={g_conditioning}")
            made[key] = train.run(cfg, run_dir=tmp_path_factory.mktemp("-".join(key)))
        return made[key]

    return get


def digits_classes() -> Classes:
    return Classes.of(sources.load_dataset(conditional_cfg(), progress=False))


# ------------------------------------------------------------------ config and data


def empty_config(tmp_path: Path) -> str:
    path = tmp_path / "my.yaml"
    path.write_text("")
    return str(path)


def test_the_switch_needs_labels_and_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"hacks.class_conditional: needs data.labels: true.*Received: true"):
        load_config(None, ["hacks.class_conditional=true"])
    result = CliRunner().invoke(main, ["train", "--config", empty_config(tmp_path), "--set",
                                       "hacks.class_conditional=true", "--set", "train.steps=1"])
    assert result.exit_code == 2 and "hacks.class_conditional" in result.output
    assert isinstance(result.exception, SystemExit)


def test_a_folder_without_class_subfolders_is_refused_before_training(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), color=i * 40).save(root / f"{i}.png")
    result = CliRunner().invoke(main, ["train", "--config", empty_config(tmp_path), "--set", "data.name=folder",
                                       "--set", f"data.path={root}",
                                       "--set", "data.labels=true", "--set", "hacks.class_conditional=true",
                                       "--set", "train.steps=1", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "data.labels" in result.output and "no class labels" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_classes_come_from_the_data_with_their_counts():
    classes = digits_classes()
    assert classes.names == tuple(str(k) for k in range(10)) and sum(classes.counts) == 1797
    assert Classes.from_json(json.loads(json.dumps(classes.to_json()))) == classes
    z, labels, cols = classes.grid(np.arange(9 * 3, dtype=np.float32).reshape(9, 3))
    assert cols == 1 and labels.tolist() == list(range(10)) and (z == z[0]).all(), "tiny grids: one column"
    z, labels, cols = classes.grid(np.random.default_rng(0).normal(size=(64, 3)))
    assert cols == 6 and z.shape == (60, 3) and labels.tolist() == [k for k in range(10) for _ in range(6)]
    assert np.array_equal(z[:6], z[6:12]), "each row draws its class from the same latents"


# ------------------------------------------------------------------ the networks see the class


@pytest.mark.parametrize("conditioning", ["projection", "auxiliary"])
def test_g_and_d_take_the_class_and_their_outputs_depend_on_it(conditioning):
    cfg = conditional_cfg(f"hacks.conditioning={conditioning}", "hacks.init_stddev=0.3")
    classes = digits_classes()
    models = build_models(cfg, np.random.default_rng(0), classes)
    assert [tuple(i.shape) for i in models.g.inputs] == [(None, 8), (None,)]
    assert [tuple(i.shape) for i in models.d.inputs] == [(None, 16, 16, 1), (None,)]
    assert [i.name for i in models.gan.inputs][:2] == ["z", "class"]
    z = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    sevens, ones = np.full(4, 7, np.int32), np.ones(4, np.int32)
    drawn = [keras.ops.convert_to_numpy(models.g([z, c], training=False)) for c in (sevens, ones)]
    assert not np.allclose(*drawn), "G's images depend on the class"
    judged = [keras.ops.convert_to_numpy(models.d([drawn[0], c], training=False)) for c in (sevens, ones)]
    if conditioning == "projection":
        assert judged[0].shape == (4, 1) and not np.allclose(*judged), "D's belief depends on the class"
    else:
        assert judged[0].shape == (4, 11) and np.allclose(*judged), "AC-GAN's D predicts the class, not given it"


def test_conditional_batch_norm_scales_and_shifts_by_the_class_and_needs_batch_norm():
    cfg = conditional_cfg()
    g = build_generator(cfg, np.random.default_rng(0), digits_classes())
    assert not g.get_layer("project_bn").center and not g.get_layer("project_bn").scale
    gain, bias = g.get_layer("project_bn_class_gain"), g.get_layer("project_bn_class_bias")
    gain.embeddings.assign(keras.ops.ones(gain.embeddings.shape) * np.arange(10, dtype=np.float32)[:, None])
    bias.embeddings.assign(keras.ops.ones(bias.embeddings.shape) * 0.5)
    probe = keras.Model(g.inputs, [g.get_layer("project_bn").output, g.get_layer("project_bn_class_shifted").output])
    z = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    normed, shifted = (keras.ops.convert_to_numpy(t) for t in probe([z, np.array([0, 1, 3, 9], np.int32)]))
    np.testing.assert_allclose(shifted, normed * np.array([0, 1, 3, 9])[:, None, None, None] + 0.5, rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ConfigError, match="hacks.g_conditioning: batch_norm .* use concat. Received: batch_norm"):
        conditional_cfg("hacks.batch_norm=false")
    assert conditional_cfg("hacks.batch_norm=false", "hacks.g_conditioning=concat").hacks.batch_norm is False


def test_the_projection_score_is_the_plain_score_plus_the_class_embedding_times_the_features():
    cfg = conditional_cfg("hacks.conditioning=projection")
    d = build_discriminator(cfg, np.random.default_rng(0), digits_classes())
    images = np.random.default_rng(2).uniform(-1, 1, size=(3, 16, 16, 1)).astype(np.float32)
    labels = np.array([0, 4, 9], np.int32)
    features = keras.Model(d.inputs, d.get_layer("flatten").output)([images, labels], training=False)
    features = keras.ops.convert_to_numpy(features)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in d.get_layer("score").weights)
    embedding = keras.ops.convert_to_numpy(d.get_layer("class_embedding").embeddings)
    logit = features @ kernel + bias + (embedding[labels] * features).sum(axis=1, keepdims=True)
    found = keras.ops.convert_to_numpy(d([images, labels], training=False))
    np.testing.assert_allclose(found, logit, rtol=1e-5, atol=1e-5)  # D ends in its raw score


def test_the_auxiliary_losses_add_the_weighted_class_cross_entropy_ds_on_real_images_gs_on_fakes():
    h = dataclasses.replace(conditional_cfg("hacks.conditioning=auxiliary", "hacks.aux_weight=0.5").hacks)
    objective = hacks.objective(h)
    p = np.array([[0.8], [0.3]], np.float32)
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    output = np.concatenate([np.log(p / (1 - p)), logits], axis=1)  # (2, 1 + 3): D's raw score, then the classes
    d_targets = np.array([[0.9, 1, 0], [0.0, 0, 2]], np.float32)  # label, source, class
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -log_softmax[[0, 1], [0, 2]]
    bce = -(d_targets[:, 0] * np.log(p[:, 0]) + (1 - d_targets[:, 0]) * np.log(1 - p[:, 0]))
    real = d_targets[:, 1]  # D's class term counts on its real images only
    np.testing.assert_allclose(keras.ops.convert_to_numpy(objective.d_loss(d_targets, output)),
                               bce + 0.5 * ce * real, rtol=1e-5)
    g_targets = np.array([[1, 0], [1, 2]], np.float32)  # 1, class
    np.testing.assert_allclose(keras.ops.convert_to_numpy(objective.g_loss(g_targets, output)),
                               -np.log(p[:, 0]) + 0.5 * ce, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.probability(output)), p, rtol=1e-5)
    plain = hacks.objective(conditional_cfg("hacks.conditioning=projection").hacks)
    assert plain is losses.CROSS_ENTROPY, "projection acts through D's score, the losses are the usual ones"


# ------------------------------------------------------------------ draws


def test_fake_classes_depend_only_on_seed_and_step_and_leave_every_other_draw_alone():
    cfg = conditional_cfg()
    classes = digits_classes()
    labels = keras.ops.convert_to_tensor(np.arange(50, dtype=np.int32) % 10)
    source = (keras.ops.convert_to_tensor(np.zeros((50, 16, 16, 1), np.uint8)), labels)

    def fakes(c, step, seed=0):
        return keras.ops.convert_to_numpy(draws.Draws(c, count=50, seed=seed, classes=classes).classes_of(
            source, step, resident=True)[1])

    first = fakes(cfg, 3)
    assert first.shape == (8,) and first.min() >= 0 and first.max() < 10
    assert np.array_equal(first, fakes(cfg, 3)) and not np.array_equal(first, fakes(cfg, 4))
    assert not np.array_equal(first, fakes(cfg, 3, seed=1))
    assert np.array_equal(first, fakes(conditional_cfg("hacks.separate_batches=false"), 3)), "its own key"
    on = draws.Draws(cfg, count=50, seed=0, classes=classes)
    off = draws.Draws(load_config(None, TINY), count=50, seed=0)
    for a, b in ((on.batch_index(3), off.batch_index(3)), (on.latents_and_plan(3)[0], off.latents_and_plan(3)[0])):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    real = keras.ops.convert_to_numpy(on.classes_of(source, 3, resident=True)[0])
    index = keras.ops.convert_to_numpy(on.batch_index(3))
    assert np.array_equal(real, index % 10), "the real images' classes are their labels"


def test_frequency_draws_follow_the_data():
    skewed = Classes(names=("a", "b"), counts=(900, 100))
    step_draws = draws.Draws(conditional_cfg("hacks.class_draw=frequency", "train.batch_size=4000"), count=10,
                             seed=0, classes=skewed)
    source = (keras.ops.zeros((10, 16, 16, 1), "uint8"), keras.ops.zeros((10,), "int32"))
    drawn = keras.ops.convert_to_numpy(step_draws.classes_of(source, 1, resident=True)[1])
    assert abs((drawn == 1).mean() - 0.1) < 0.02


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("conditioning", ["projection", "auxiliary", "projection-concat"])
def test_both_loops_train_the_same_conditional_networks(conditional_run, conditioning):
    conditioning, g_conditioning = (*conditioning.split("-"), "batch_norm")[:2]
    split, compiled = (weights(conditional_run(loop, conditioning, g_conditioning))
                       for loop in ("train_on_batch", "compiled"))
    assert split.keys() == compiled.keys()
    assert [key for key in split if not np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6)] == []
    saved = json.loads((conditional_run("compiled", conditioning, g_conditioning) / "checkpoints" / "step_000004" /
                        "state.json").read_text())["variables"]
    assert any("class_embedding" in path for path, _ in saved["d"]) == (conditioning == "projection")
    assert any("z_and_class" in path for path, _ in saved["g"]) == (g_conditioning == "concat")
    assert any("_gain" in path for path, _ in saved["g"]) == (g_conditioning == "batch_norm")


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_a_conditional_run_resumes_bit_for_bit(conditional_run, tmp_path, loop):
    whole = conditional_run(loop, "projection")
    crashed = crashed_copy(whole, after=2, to=tmp_path / "crashed")
    train.run(conditional_cfg(f"train.loop={loop}", "hacks.conditioning=projection"), run_dir=crashed, resume=True)
    a, b = weights(whole), weights(crashed)
    assert [key for key in a if not np.array_equal(a[key], b[key])] == []


def test_the_checkpoint_names_the_classes_and_a_resume_on_other_classes_is_refused(conditional_run, tmp_path):
    run = conditional_run("compiled", "auxiliary")
    assert checkpoint.saved_classes(run / "checkpoints" / "step_000004") == digits_classes()
    moved = crashed_copy(run, after=2, to=tmp_path / "moved")
    cfg = conditional_cfg("train.loop=compiled", "hacks.conditioning=auxiliary", "data.limit=50")
    with pytest.raises(checkpoint.CheckpointError, match="classes are not the data's"):
        train.run(cfg, run_dir=moved, resume=True)


def test_the_training_grid_has_one_row_per_class(conditional_run):
    grid = np.asarray(Image.open(conditional_run("train_on_batch", "projection") / "samples" / "step_000004.png"))
    # 9 fixed latents and 10 classes: one column, ten rows of 16 pixels (and 1-pixel separators), enlarged alike.
    assert grid.shape[0] / grid.shape[1] == pytest.approx((10 * 17 + 1) / 18)


def test_the_generator_of_a_conditional_checkpoint_loads_with_its_classes(conditional_run):
    cfg, g = checkpoint.load_generator(conditional_run("compiled", "projection") / "checkpoints" / "step_000004")
    assert cfg.hacks.class_conditional and [tuple(i.shape) for i in g.inputs] == [(None, 8), (None,)]
    built = build_generator(cfg, np.random.default_rng(0), digits_classes())
    assert [w.shape for w in g.weights] == [w.shape for w in built.weights]


# ------------------------------------------------------------------ sampling, export and scores


def run_cli(*args: str):
    result = CliRunner().invoke(main, [*args])
    return result


def test_sample_class_draws_that_class_and_export_reproduces_it(conditional_run, tmp_path):
    run = conditional_run("compiled", "projection")
    drawn = run_cli("sample", "--checkpoint", str(run), "--class", "7", "--n", "5", "--seed", "3",
                    "--out", str(tmp_path / "sevens.png"), "--individual", str(tmp_path / "each"))
    assert drawn.exit_code == 0, drawn.output
    assert "5 images of class 7" in drawn.output
    exported = tmp_path / "generator.keras"
    result = run_cli("export", "--checkpoint", str(run), "--out", str(exported))
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(exported)
    import zipfile

    info = json.loads(zipfile.ZipFile(exported).read("dcgan.json"))
    assert info["classes"] == [str(k) for k in range(10)] and info["input"].startswith("[z, class]")
    assert [tuple(i.shape) for i in model.inputs] == [(None, 8), (None,)]
    z = np.random.default_rng(3).standard_normal((5, 8), dtype=np.float32)
    images = np.rint(keras.ops.convert_to_numpy(model.predict_on_batch([z, np.full(5, 7, np.int32)])))
    sampled = np.stack([np.asarray(Image.open(path)) for path in sorted((tmp_path / "each").iterdir())])
    np.testing.assert_array_equal(images.astype(np.uint8)[..., 0], sampled)
    other = np.rint(keras.ops.convert_to_numpy(model.predict_on_batch([z, np.full(5, 1, np.int32)])))
    assert not np.array_equal(other, images)


def test_per_class_grid_has_a_labelled_row_per_class_and_walks_keep_their_class(conditional_run, tmp_path):
    run = conditional_run("compiled", "projection")
    result = run_cli("sample", "--checkpoint", str(run), "--per-class", "3", "--out", str(tmp_path / "rows.png"))
    assert result.exit_code == 0, result.output
    rows = np.asarray(Image.open(tmp_path / "rows.png"))
    factor = -(-512 // (3 * 17 + 1))  # grids are enlarged to at least 512 pixels wide
    assert rows.shape[0] == (10 * 17 + 1) * factor, "ten rows"
    assert rows.shape[1] > (3 * 17 + 1) * factor, "a column of class names on the left"
    label_column = rows[:, :rows.shape[1] - (3 * 17 + 1) * factor]
    assert (label_column > 200).any(), "the names are drawn"
    walk = run_cli("sample", "--checkpoint", str(run), "--interpolate", "2", "--frames", "3", "--class", "4",
                   "--out", str(tmp_path / "walk.png"), "--individual", str(tmp_path / "walk"))
    assert walk.exit_code == 0, walk.output
    from dcgan_cli.nets import sampling
    from dcgan_cli.nets.models import generate

    cfg, g = checkpoint.load_generator(run / "checkpoints" / "step_000004")
    z = sampling.interpolation_latents(np.random.default_rng(0), 2, cfg, frames=3, method="slerp", truncate=None)
    expected = generate(g, z.reshape(6, -1), cfg, np.full(6, 4, np.int32))
    found = np.stack([np.asarray(Image.open(path)) for path in sorted((tmp_path / "walk").iterdir())])
    np.testing.assert_array_equal(found, expected[..., 0])


@pytest.mark.parametrize("args", [("--class", "7"), ("--per-class", "2")])
def test_asking_an_unconditional_checkpoint_for_a_class_is_one_line_and_exit_2(plain_run, tmp_path, args):
    result = run_cli("sample", "--checkpoint", str(plain_run("compiled")), *args, "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "unconditional G" in result.output and "Received: " in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_an_unknown_class_names_the_classes(conditional_run, tmp_path):
    result = run_cli("sample", "--checkpoint", str(conditional_run("compiled", "projection")), "--class", "cat",
                     "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "no class 'cat'" in result.output and "0, 1, 2" in result.output


@pytest.mark.usefixtures("tiny_scores")
def test_evaluate_reports_conditional_accuracy_and_intra_class_fd(conditional_run, tmp_path):
    run = conditional_run("compiled", "auxiliary")
    result = run_cli("evaluate", "--checkpoint", str(run), "--n", "100", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["conditional"]
    assert found["per_class"] == 10 and set(found["class_accuracy"]) == {str(k) for k in range(10)}
    assert 0 <= found["conditional_accuracy"] <= 1 and found["intra_fd"] > 0
    assert found["conditional_accuracy"] == pytest.approx(np.mean(list(found["class_accuracy"].values())))
    text = run_cli("evaluate", "--checkpoint", str(run), "--n", "100")
    assert "conditional accuracy (domain)" in text.output and "intra-class FD (domain)" in text.output


@pytest.mark.usefixtures("tiny_scores")
def test_a_perfect_generator_scores_the_classifiers_own_accuracy():
    from dcgan_cli.evaluate import scoring

    cfg = conditional_cfg()
    dataset = sources.load_dataset(cfg, progress=False)
    ref = scoring.reference(dataset, "domain", cfg=cfg, progress=False, log=lambda _: None)
    rng = np.random.default_rng(0)

    def real_images_of(index: int, n: int) -> np.ndarray:
        return dataset.images[rng.choice(np.flatnonzero(dataset.labels == index), n, replace=False)]

    found = scoring.conditional_scores(ref.extractor, real_images_of, Classes.of(dataset), dataset, count=1000)
    assert found["conditional_accuracy"] == pytest.approx(ref.extractor.accuracy, abs=0.03)
    wrong = scoring.conditional_scores(ref.extractor, lambda index, n: real_images_of((index + 1) % 10, n),
                                       Classes.of(dataset), dataset, count=1000)
    assert wrong["conditional_accuracy"] < 0.1 and wrong["intra_fd"] > 5 * found["intra_fd"]


def test_the_switch_changes_the_architecture_hash_only_when_on():
    import hashlib

    from dcgan_cli.config import ARCHITECTURE, HASHED_OFF_DEFAULT, flatten

    off = load_config(None, TINY)
    flat = flatten(off)
    keys = [key for key in ARCHITECTURE if key not in HASHED_OFF_DEFAULT]  # the keys before model.base_size
    before = hashlib.sha256(json.dumps({key: flat[key] for key in keys}).encode()).hexdigest()[:16]
    assert checkpoint.architecture_hash(off) == before, "checkpoints written before hack 21 still resume"
    assert checkpoint.architecture_hash(load_config(None, [*TINY, "model.base_size=2"])) != before
    hashes = {checkpoint.architecture_hash(conditional_cfg(f"hacks.conditioning={c}", f"hacks.g_conditioning={g}"))
              for c in ("projection", "auxiliary") for g in ("batch_norm", "concat")}
    assert len(hashes) == 4 and before not in hashes


def test_an_ablation_run_of_a_conditional_config_measures_its_diversity(conditional_run):
    from dcgan_cli.ablate import worker

    run = conditional_run("compiled", "projection")
    diversity = worker._diversity(run / "checkpoints" / "step_000004", conditional_cfg(), seed=0)
    assert np.isfinite(diversity) and diversity > 0


def test_a_conditional_checkpoint_without_its_classes_is_a_clean_error(conditional_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(conditional_run("compiled", "projection") / "checkpoints" / "step_000004", broken)
    state = json.loads((broken / "state.json").read_text())
    del state["classes"]
    (broken / "state.json").write_text(json.dumps(state))
    result = run_cli("sample", "--checkpoint", str(broken), "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "names no classes" in result.output and "Received: " in result.output
