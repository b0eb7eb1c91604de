"""Datasets: the embedded digits, image folders (with their cache), array files, IDX, CIFAR binary, Keras' cache."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_cli.data import sources
from dcgan_cli.config import load_config
from dcgan_cli.data import folder
from dcgan_cli.data.common import to_uint8

MNIST_T10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def cfg_for(*overrides, size=16, channels=3):
    return load_config(None, [f"model.image_size={size}", f"model.channels={channels}", *overrides])


def load(*overrides, size=16, channels=3, messages=None):
    log = messages.append if messages is not None else (lambda message: None)
    return sources.load_dataset(cfg_for(*overrides, size=size, channels=channels), progress=False, log=log)


def save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Mixed formats, sizes and modes in two class folders, one corrupt file, one truncated file, a text file."""
    root = tmp_path / "images"
    save(Image.new("L", (20, 30), 200), root / "cats" / "a.png")
    save(Image.new("RGB", (40, 20), (10, 200, 30)), root / "cats" / "b.jpg", quality=95)
    save(Image.new("RGB", (16, 16), (0, 0, 255)), root / "cats" / "deeper" / "c.bmp")
    save(Image.new("RGB", (24, 24), (255, 0, 0)), root / "dogs" / "d.webp", lossless=True)
    frames = [Image.new("P", (18, 18), 1), Image.new("P", (18, 18), 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 255, 0, 0, 255, 255] + [0] * 759)
    save(frames[0], root / "dogs" / "e.gif", save_all=True, append_images=frames[1:])
    transparent = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    transparent.paste((0, 0, 0, 255), (0, 0, 8, 16))
    save(transparent, root / "dogs" / "f.png")
    (root / "dogs" / "broken.png").write_bytes(b"this is not a png")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (50, 60, 70)).save(jpeg, format="JPEG")
    (root / "dogs" / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])
    (root / "notes.txt").write_text("not an image, not counted")
    save(Image.new("RGB", (16, 16)), root / ".thumbnails" / "hidden.png")
    return root


def folder_overrides(root: Path, tmp_path: Path, *extra):
    return ["data.name=folder", f"data.path={root}", f"data.cache_dir={tmp_path / 'cache'}", *extra]


# ------------------------------------------------------------------ digits


def test_digits_are_resized_uint8_images_with_labels():
    dataset = load(size=16, channels=1)
    assert dataset.images.shape == (1797, 16, 16, 1) and dataset.images.dtype == np.uint8
    assert dataset.images.min() == 0 and dataset.images.max() == 255
    assert dataset.images[:, 0].mean() < dataset.images[:, 6:10, 6:10].mean(), "ink in the middle"
    assert dataset.labels.shape == (1797,) and sorted(set(dataset.labels.tolist())) == list(range(10))


def test_digits_in_rgb_repeat_the_grey_channel_and_limit_applies():
    images = load("data.limit=100", size=8, channels=3).images
    assert images.shape == (100, 8, 8, 3)
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()


def test_digits_are_fitted_once_per_size_and_read_only_so_no_run_can_change_anothers():
    first, again = load("data.limit=100", size=16, channels=1), load(size=16, channels=1)
    assert np.shares_memory(first.images, again.images) and np.array_equal(first.images, again.images[:100])
    assert np.array_equal(first.labels, again.labels[:100])
    with pytest.raises(ValueError, match="read-only"):
        first.images[0] = 0
    with pytest.raises(ValueError, match="read-only"):
        again.labels[0] = 1


def test_sample_batch_is_seeded():
    images = load(size=8, channels=1).images
    first = sources.sample_batch(images, 32, np.random.default_rng(3))
    again = sources.sample_batch(images, 32, np.random.default_rng(3))
    other = sources.sample_batch(images, 32, np.random.default_rng(4))
    assert first.shape == (32, 8, 8, 1) and np.array_equal(first, again) and not np.array_equal(first, other)


# ------------------------------------------------------------------ folders


def test_folder_decodes_every_readable_image_and_warns_once_about_the_rest(image_folder, tmp_path):
    messages: list[str] = []
    dataset = load(*folder_overrides(image_folder, tmp_path), messages=messages)
    assert dataset.images.shape == (6, 16, 16, 3) and dataset.images.dtype == np.uint8
    assert isinstance(dataset.images, np.memmap)
    assert messages == ["warning: skipped 2 of 8 image files that could not be read: "
                        "dogs/broken.png, dogs/truncated.jpg"]
    assert dataset.class_names == ("cats", "dogs") and dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    a, b, c, d, e, f = dataset.images
    assert (a == 200).all(), "grey becomes RGB"
    assert abs(int(b[8, 8, 1]) - 200) < 8 and b[8, 8, 0] < 30, "JPEG decoded"
    assert (c[..., 2] == 255).all() and (d[..., 0] == 255).all(), "BMP and WebP decoded"
    assert tuple(e[8, 8]) == (255, 255, 0), "first GIF frame (palette index 1), not the second"
    assert tuple(f[8, 12]) == (255, 255, 255) and tuple(f[8, 3]) == (0, 0, 0), "transparency on white"


def test_folder_resizes_the_shorter_side_and_centre_crops(tmp_path):
    image = Image.new("RGB", (60, 20), (0, 255, 0))
    image.paste((255, 0, 0), (0, 0, 15, 20))  # left quarter red, cropped away
    image.paste((0, 0, 255), (45, 0, 60, 20))  # right quarter blue, cropped away
    root = tmp_path / "wide"
    save(image, root / "x.png")
    (picture,) = load(*folder_overrides(root, tmp_path)).images
    assert picture.shape == (16, 16, 3) and (picture[..., 1] > 200).all() and (picture[..., 0] < 50).all()


def test_folder_in_grey_and_limit(image_folder, tmp_path):
    dataset = load(*folder_overrides(image_folder, tmp_path, "data.limit=2"), channels=1)
    assert dataset.images.shape == (2, 16, 16, 1)
    assert abs(int(dataset.images[1, 8, 8, 0]) - round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)) < 8


def test_folder_cache_is_reused_and_rebuilt_when_a_file_changes(image_folder, tmp_path, monkeypatch):
    first = load(*folder_overrides(image_folder, tmp_path))
    decoded = []
    original = folder._decode_one
    monkeypatch.setattr(folder, "_decode_one", lambda *args: decoded.append(args[0]) or original(*args))
    again = load(*folder_overrides(image_folder, tmp_path))
    assert decoded == [] and again.cache == first.cache and np.array_equal(again.images, first.images)

    save(Image.new("RGB", (16, 16), (1, 2, 3)), image_folder / "cats" / "deeper" / "c.bmp")
    os.utime(image_folder / "cats" / "deeper" / "c.bmp", ns=(1, 1))
    changed = load(*folder_overrides(image_folder, tmp_path))
    assert len(decoded) == 8 and changed.cache != first.cache
    assert tuple(changed.images[2, 0, 0]) == (1, 2, 3)

    decoded.clear()
    load(*folder_overrides(image_folder, tmp_path), size=8)
    assert len(decoded) == 8, "another image size is another cache"
    assert not list((tmp_path / "cache").glob(".*tmp*")), "no temporary files left"


def test_folder_labels_need_class_subfolders(tmp_path):
    root = tmp_path / "flat"
    save(Image.new("RGB", (8, 8)), root / "one.png")
    save(Image.new("RGB", (8, 8)), root / "kind" / "two.png")
    with pytest.raises(sources.DataError, match="data.labels: .* has no class labels.*Received: True"):
        load(*folder_overrides(root, tmp_path, "data.labels=true"))
    assert not (tmp_path / "cache").exists(), "refused from the file names, before anything was decoded"
    assert load(*folder_overrides(root, tmp_path)).labels is None


def test_labels_are_probed_from_file_names_without_decoding(tmp_path):
    def probe(*overrides):
        return sources.probe_labels(cfg_for(*overrides, size=8, channels=3))

    flat, classes, one = tmp_path / "flat", tmp_path / "classes", tmp_path / "one"
    save(Image.new("RGB", (8, 8)), flat / "a.png")
    for name in ("cats", "dogs"):
        save(Image.new("RGB", (8, 8)), classes / name / "a.png")
    save(Image.new("RGB", (8, 8)), one / "cats" / "a.png")
    assert probe(*folder_overrides(flat, tmp_path)) is False
    assert probe(*folder_overrides(classes, tmp_path)) is True
    assert probe(*folder_overrides(one, tmp_path)) is False, "one class is no labels to score with"
    assert probe(*folder_overrides(classes, tmp_path, "data.limit=1")) is False, "the first file only: one class"
    assert not (tmp_path / "cache").exists()
    assert probe("data.name=digits") is True and probe("data.name=npy", "data.path=x.npy") is False
    assert probe("data.name=npz", "data.path=x.npz") is None, "only loading an .npz tells"


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "data.path: no such folder. Received: '.*missing'"),
    (lambda root: root.write_text("x"), "data.path: expected a folder of images"),
    (lambda root: root.mkdir(), "data.path: no image files \\(png, jpg, jpeg, bmp, webp, gif\\) under this folder"),
    (lambda root: (root.mkdir(), (root / "a.txt").write_text("x")), "no image files"),
    (lambda root: (root.mkdir(), (root / "a.png").write_bytes(b"junk"), (root / "b.jpg").write_bytes(b"junk")),
     "data.path: none of the 2 image files could be read \\(first: a.png\\)"),
])
def test_folder_errors_name_the_path(tmp_path, make, message):
    root = tmp_path / "missing"
    make(root)
    with pytest.raises(sources.DataError, match=message):
        load(*folder_overrides(root, tmp_path))


# ------------------------------------------------------------------ array files


@pytest.mark.parametrize("array, expected", [
    (np.full((2, 8, 8), 0.5, np.float32), 128),
    (np.full((2, 8, 8, 1), -1.0, np.float64), 0),
    (np.full((2, 8, 8, 3), 255, np.int64), 255),
    (np.full((2, 8, 8, 3), 7, np.uint8), 7),
])
def test_to_uint8_maps_the_common_ranges(array, expected):
    out = to_uint8(array, source="x")
    assert out.dtype == np.uint8 and out.ndim == 4 and (out == expected).all()


@pytest.mark.parametrize("array, message", [
    (np.full((2, 8, 8), 300, np.int16), "expected pixels in \\[0, 1\\], \\[-1, 1\\] or \\[0, 255\\]. "
                                        "Received: range \\[300, 300\\]"),
    (np.zeros((2, 8, 8, 5), np.uint8), "expected images shaped .* Received: shape \\(2, 8, 8, 5\\)"),
    (np.array([[[np.nan]]]), "NaN or infinity"),
    (np.zeros((2, 8), np.uint8), "Received: shape \\(2, 8\\)"),
])
def test_to_uint8_refuses_what_it_cannot_read(array, message):
    with pytest.raises(sources.DataError, match=message):
        to_uint8(array, source="x")


def test_npy_and_npz_files(tmp_path):
    np.save(tmp_path / "a.npy", np.full((5, 12, 12), 1.0, np.float32))
    dataset = load("data.name=npy", f"data.path={tmp_path / 'a.npy'}", size=8, channels=1)
    assert dataset.images.shape == (5, 8, 8, 1) and (dataset.images == 255).all() and dataset.labels is None

    np.savez(tmp_path / "xy.npz", x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([3, 1, 3, 0]))
    dataset = load("data.name=npz", f"data.path={tmp_path / 'xy.npz'}", "data.labels=true", size=8)
    assert dataset.images.shape == (4, 8, 8, 3) and dataset.labels.tolist() == [3, 1, 3, 0]

    np.savez(tmp_path / "one.npz", pictures=np.zeros((3, 8, 8), np.uint8))
    assert load("data.name=npz", f"data.path={tmp_path / 'one.npz'}", size=8).images.shape == (3, 8, 8, 3)

    np.savez(tmp_path / "keras.npz", x_train=np.zeros((3, 8, 8), np.uint8), y_train=np.arange(3),
             x_test=np.ones((2, 8, 8), np.uint8), y_test=np.arange(2))
    dataset = load("data.name=npz", f"data.path={tmp_path / 'keras.npz'}", size=8)
    assert len(dataset.images) == 5 and dataset.labels.tolist() == [0, 1, 2, 0, 1]


@pytest.mark.parametrize("write, overrides, message", [
    (lambda p: np.savez(p / "f.npz", a=np.zeros(3), b=np.zeros(3)), ["data.name=npz", "data.path={}/f.npz"],
     "expected an array named 'x'.* it holds a, b"),
    (lambda p: np.save(p / "f.npy", np.array([{"a": 1}], dtype=object)), ["data.name=npy", "data.path={}/f.npy"],
     "data.path: cannot read this .npy file"),
    (lambda p: (p / "f.npz").write_bytes(b"junk"), ["data.name=npz", "data.path={}/f.npz"],
     "data.path: cannot read this .npz file"),
    (lambda p: (p / "f.npz").write_bytes(b"PK\x03\x04 cut short"), ["data.name=npz", "data.path={}/f.npz"],
     "data.path: cannot read this .npz file"),
    (lambda p: None, ["data.name=npz", "data.path={}/none.npz"], "data.path: no such file. Received: '.*none.npz'"),
    (lambda p: np.save(p / "f.npy", np.zeros((3, 8, 8), np.uint8)),
     ["data.name=npy", "data.path={}/f.npy", "data.labels=true"], "data.labels: .* has no class labels"),
])
def test_array_file_errors(tmp_path, write, overrides, message):
    write(tmp_path)
    with pytest.raises(sources.DataError, match=message):
        load(*[o.format(tmp_path) for o in overrides], size=8)


# ------------------------------------------------------------------ IDX, CIFAR-10, Keras' cache


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def idx_pair(directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)


def test_idx_files_written_by_the_test(tmp_path):
    images = np.arange(5 * 28 * 28, dtype=np.uint32).reshape(5, 28, 28) % 256
    idx_pair(tmp_path, "train", images, np.array([4, 3, 2, 1, 0]))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:2], compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([9, 9]), compress=False)
    dataset = load("data.name=fashion_mnist", f"data.path={tmp_path}", size=28, channels=1)
    assert dataset.images.shape == (7, 28, 28, 1) and dataset.labels.tolist() == [4, 3, 2, 1, 0, 9, 9]
    assert np.array_equal(dataset.images[:5, ..., 0], images.astype(np.uint8))


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x00\x09\x03" + b"\x00" * 12, "bad magic number"),
    (bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100, "truncated"),
])
def test_broken_idx_files_are_named(tmp_path, payload, message):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(payload)
    with pytest.raises(sources.DataError, match=f"{message}.*Received: '.*train-images-idx3-ubyte'"):
        load("data.name=mnist", f"data.path={tmp_path}", size=28, channels=1)


@pytest.mark.skipif(not MNIST_T10K.is_dir(), reason="../shared/data/mnist-t10k is not here")
def test_the_real_mnist_test_set_from_its_idx_files():
    dataset = load("data.name=mnist", f"data.path={MNIST_T10K}", "data.labels=true", size=28, channels=1)
    assert dataset.images.shape == (10000, 28, 28, 1)
    assert np.bincount(dataset.labels).tolist() == MNIST_COUNTS
    assert dataset.images.mean() == pytest.approx(33.8, abs=0.5)


def test_cifar10_binary_batches(tmp_path):
    records = np.zeros((2, 3073), np.uint8)
    records[:, 0] = [7, 2]
    records[0, 1:1025] = 255  # first image: red plane full
    records[1, 2049:] = 128  # second image: blue plane half
    folder_path = tmp_path / "cifar-10-batches-bin"
    folder_path.mkdir()
    records.tofile(folder_path / "data_batch_1.bin")
    dataset = load("data.name=cifar10", f"data.path={tmp_path}", size=32)
    assert dataset.images.shape == (2, 32, 32, 3) and dataset.labels.tolist() == [7, 2]
    assert tuple(dataset.images[0, 5, 5]) == (255, 0, 0) and tuple(dataset.images[1, 5, 5]) == (0, 0, 128)
    (folder_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(sources.DataError, match="not a CIFAR-10 binary batch"):
        load("data.name=cifar10", f"data.path={tmp_path}", size=32)


def test_keras_cache_is_read_without_keras_or_network(tmp_path, monkeypatch):
    import keras

    def no_download():
        raise AssertionError("keras.datasets must not be called when the cache holds the files")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_download)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", no_download)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=np.zeros((6, 28, 28), np.uint8),
             y_train=np.arange(6), x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.arange(4))
    dataset = load("data.name=mnist", size=28, channels=1)
    assert len(dataset.images) == 10 and dataset.source.endswith("mnist.npz")
    idx_pair(tmp_path / "datasets" / "fashion-mnist", "train", np.zeros((3, 28, 28)), np.array([1, 2, 3]))
    assert load("data.name=fashion_mnist", size=28, channels=1).labels.tolist() == [1, 2, 3]


def run_dcgan(tmp_path, keras_home, *args):
    env = {**os.environ, "KERAS_HOME": str(keras_home), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "dcgan_cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)


@pytest.mark.e2e
def test_keras_datasets_path_in_a_fresh_process_with_a_cached_npz(tmp_path):
    (tmp_path / "home" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / "home" / "datasets" / "mnist.npz", x_train=np.full((7, 28, 28), 9, np.uint8),
             y_train=np.arange(7))
    (tmp_path / "c.yaml").write_text("data:\n  name: mnist\nmodel:\n  image_size: 28\n")
    result = run_dcgan(tmp_path, tmp_path / "home", "data", "--config", "c.yaml")
    assert result.returncode == 0, result.stderr
    assert "images:      7" in result.stdout and (tmp_path / "real.png").is_file()


@pytest.mark.e2e
def test_offline_without_a_cached_file_says_where_to_put_it(tmp_path):
    (tmp_path / "c.yaml").write_text("data:\n  name: mnist\nmodel:\n  image_size: 28\n")
    result = run_dcgan(tmp_path, tmp_path / "home", "data", "--config", "c.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "could not download it through keras.datasets" in result.stderr
    assert f"put mnist.npz into {tmp_path / 'home' / 'datasets'}/" in result.stderr


# ------------------------------------------------------------------ what `dcgan data` prints


def test_describe_lists_what_a_user_checks(image_folder, tmp_path):
    lines = sources.describe(load(*folder_overrides(image_folder, tmp_path)))
    text = "\n".join(lines)
    assert "images:      6" in text and "(6, 16, 16, 3) uint8" in text and "value range: 0 .. 255" in text
    assert "memory:      0.0 MiB (N x H x W x C bytes), memory-mapped" in text
    assert "cache:       " + str(tmp_path / "cache") in text and "labels:      2 classes: cats 3, dogs 3" in text


def test_paths_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    save(Image.new("RGB", (8, 8), (9, 9, 9)), tmp_path / "pictures" / "a.png")
    dataset = load("data.name=folder", "data.path=~/pictures", "data.cache_dir=~/cache", size=8)
    assert len(dataset.images) == 1 and str(dataset.cache).startswith(str(tmp_path / "cache"))
