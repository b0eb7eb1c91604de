"""Latents, truncation, walks between latents, and the grids and GIFs `dcgan sample` writes from them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY
from PIL import Image

from dcgan_cli.nets import sampling
from dcgan_cli.cli import main
from dcgan_cli.config import load_config


@pytest.fixture
def cfg():
    return load_config(None, ["model.latent_dim=100"])


def test_slerp_ends_at_both_latents_and_keeps_a_gaussian_norm(cfg):
    rng = np.random.default_rng(0)
    a, b = sampling.latents(rng, 2, cfg)
    path = sampling.walk(a, b, frames=9, method="slerp")
    assert path.shape == (9, 100) and path.dtype == np.float32
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    norms = np.linalg.norm(path, axis=1)
    assert np.all(np.abs(norms - np.sqrt(100)) < 1.5), norms  # sqrt(100) = 10, the typical norm of N(0, I)
    middle = np.linalg.norm(sampling.walk(a, b, frames=9, method="linear")[4])
    assert middle < 0.8 * np.sqrt(100), "a straight line dips toward the origin, which is why slerp is the default"


def test_slerp_of_parallel_latents_is_a_straight_line():
    a = np.ones(4, np.float32)
    np.testing.assert_allclose(sampling.slerp(a, 2 * a, np.array([0.5])), [1.5 * a], rtol=1e-6)


def test_truncation_keeps_every_component_within_the_bound(cfg):
    z = sampling.latents(np.random.default_rng(0), 500, cfg, truncate=1.5)
    assert np.abs(z).max() <= 1.5 and np.abs(z).max() > 1.4
    uniform = load_config(None, ["hacks.gaussian_latent=false"])
    u = sampling.latents(np.random.default_rng(0), 500, uniform, truncate=1.0)  # 1 std of U(-1, 1) = 0.577
    assert np.abs(u).max() <= 1 / np.sqrt(3)
    untruncated = sampling.latents(np.random.default_rng(0), 500, cfg)
    assert np.abs(untruncated).max() > 3


def test_walks_are_drawn_per_row_and_refuse_a_bad_method(cfg):
    walks = sampling.interpolation_latents(np.random.default_rng(0), 3, cfg, frames=5, method="slerp")
    assert walks.shape == (3, 5, 100)
    assert not np.allclose(walks[0, 0], walks[1, 0])
    with pytest.raises(ValueError, match="Received: 'cubic'"):
        sampling.walk(walks[0, 0], walks[0, -1], frames=5, method="cubic")


def test_the_walk_gif_has_one_frame_per_step(tmp_path):
    pictures = np.random.default_rng(0).integers(0, 256, (3, 7, 8, 8, 1), dtype=np.uint8)
    sampling.save_walks_gif(pictures, tmp_path / "walk.gif")
    sampling.save_walks(pictures, tmp_path / "walk.png")
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 7 and gif.info["loop"] == 0
    with Image.open(tmp_path / "walk.png") as png:
        width, height = png.size
    assert width > height, "7 columns (the steps) by 3 rows (the walks)"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dcgan_cli.training import train

    return train.run(load_config(None, TINY), run_dir=tmp_path_factory.mktemp("sampling") / "run")


def test_dcgan_sample_interpolates_into_a_grid_and_a_gif(tmp_path, trained):
    result = CliRunner().invoke(main, ["sample", "--checkpoint", str(trained), "--interpolate", "3", "--frames", "6",
                                       "--out", str(tmp_path / "walks.png"), "--gif", str(tmp_path / "walks.gif"),
                                       "--individual", str(tmp_path / "each")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "walks.gif") as gif:
        assert gif.n_frames == 6
    assert len(list((tmp_path / "each").iterdir())) == 18
    truncated = CliRunner().invoke(main, ["sample", "--checkpoint", str(trained), "--truncate", "0.5", "--n", "4",
                                          "--out", str(tmp_path / "t.png")])
    assert truncated.exit_code == 0, truncated.output
    assert (tmp_path / "t.png").is_file()


def test_a_gif_without_walks_is_refused_before_anything_is_written(tmp_path, trained):
    result = CliRunner().invoke(main, ["sample", "--checkpoint", str(trained), "--gif", str(tmp_path / "x.gif"),
                                       "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "give --interpolate K too" in result.output
    assert not any(tmp_path.iterdir())


def test_the_exported_model_loads_with_plain_keras_and_draws_what_sample_draws(tmp_path, trained):
    exported = tmp_path / "generator.keras"
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(trained), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    drawn = CliRunner().invoke(main, ["sample", "--checkpoint", str(trained), "--n", "6", "--seed", "3",
                                      "--out", str(tmp_path / "grid.png"), "--individual", str(tmp_path / "each")])
    assert drawn.exit_code == 0, drawn.output
    script = f"""
import json, sys, zipfile
import numpy as np, keras
model = keras.saving.load_model({str(exported)!r})
info = json.loads(zipfile.ZipFile({str(exported)!r}).read("dcgan.json"))
z = np.random.default_rng(3).standard_normal((6, info["latent_dim"]), dtype=np.float32)
np.save({str(tmp_path / "exported.npy")!r}, np.rint(model.predict_on_batch(z)).astype(np.uint8))
print(json.dumps({{"dcgan_cli_imported": "dcgan_cli" in sys.modules, **info}}))
"""
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    info = json.loads(process.stdout.strip().splitlines()[-1])
    assert info["dcgan_cli_imported"] is False and info["latent_distribution"] == "normal(0, 1)"
    exported_images = np.load(tmp_path / "exported.npy")
    sampled = np.stack([np.asarray(Image.open(path)) for path in sorted((tmp_path / "each").iterdir())])
    assert exported_images.shape == (6, 16, 16, 1)
    np.testing.assert_array_equal(exported_images[..., 0], sampled)


def test_export_refuses_a_file_keras_cannot_save_to(tmp_path, trained):
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(trained), "--out", str(tmp_path / "g.h5")])
    assert result.exit_code == 2 and "Received: " in result.output and not any(tmp_path.iterdir())
