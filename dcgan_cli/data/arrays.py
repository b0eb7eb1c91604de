"""Image arrays from local files: .npy/.npz, MNIST-style IDX files and the CIFAR-10 binary batches.

Nothing here unpickles: arrays load with allow_pickle=False and the other formats are read as raw bytes.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np

from dcgan_cli.data.common import DataError
from dcgan_cli.files import one_line

IDX_SPLITS = ("train", "t10k")
CIFAR_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
CIFAR_RECORD = 1 + 32 * 32 * 3  # one label byte, then 1,024 red, 1,024 green and 1,024 blue bytes


def load_npy(path: Path) -> np.ndarray:
    """The array stored in a .npy file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"data.path: cannot read this .npy file ({one_line(error)}). Received: {str(path)!r}") from None


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and labels from a .npz: `x` (and `y`), the only array, or Keras' x_train/x_test (y_train/y_test)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"data.path: cannot read this .npz file ({one_line(error)}). Received: {str(path)!r}") from None
    if "x" in arrays:
        return arrays["x"], arrays.get("y")
    if len(arrays) == 1:
        return next(iter(arrays.values())), None
    splits = [split for split in ("train", "test") if f"x_{split}" in arrays]
    if splits:
        images = np.concatenate([arrays[f"x_{split}"] for split in splits])
        if all(f"y_{split}" in arrays for split in splits):
            return images, np.concatenate([arrays[f"y_{split}"] for split in splits])
        return images, None
    raise DataError(f"data.path: expected an array named 'x', a single array, or Keras' x_train/x_test in the "
                    f".npz; it holds {', '.join(sorted(arrays)) or 'nothing'}. Received: {str(path)!r}")


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (the original MNIST format, optionally gzipped) as a uint8 array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"data.path: cannot read this IDX file ({one_line(error)}). Received: {str(path)!r}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"data.path: not an IDX file of unsigned bytes (bad magic number). Received: {str(path)!r}")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = raw[4 + 4 * dims:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"data.path: IDX file truncated or padded: header says {shape}, "
                        f"{len(body)} bytes follow. Received: {str(path)!r}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    """directory/stem.gz or directory/stem, whichever exists."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """MNIST-style IDX files in a folder: train-images-idx3-ubyte[.gz] and/or t10k-images-idx3-ubyte[.gz], with
    their labels-idx1 files where present; the splits found are concatenated, train first."""
    images, labels = [], []
    for split in IDX_SPLITS:
        found = _find(directory, f"{split}-images-idx3-ubyte")
        if found is None:
            continue
        images.append(read_idx(found))
        label_file = _find(directory, f"{split}-labels-idx1-ubyte")
        labels.append(read_idx(label_file) if label_file else None)
    if not images:
        raise DataError("data.path: no MNIST-style IDX files (train-images-idx3-ubyte.gz or "
                        f"t10k-images-idx3-ubyte.gz) in this folder. Received: {str(directory)!r}")
    for image_block, label_block in zip(images, labels):
        if label_block is not None and len(label_block) != len(image_block):
            raise DataError(f"data.path: {len(image_block)} images but {len(label_block)} labels in the IDX files. "
                            f"Received: {str(directory)!r}")
    all_labels = None if any(block is None for block in labels) else np.concatenate(labels)
    return np.concatenate(images), all_labels


def load_cifar_binary(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's binary version (data_batch_1.bin ... test_batch.bin, in the folder or its
    cifar-10-batches-bin/): uint8 (N, 32, 32, 3) and int64 labels (N,)."""
    if (directory / "cifar-10-batches-bin").is_dir():
        directory = directory / "cifar-10-batches-bin"
    files = [directory / name for name in CIFAR_BATCHES if (directory / name).is_file()]
    if not files:
        raise DataError("data.path: no CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin, from "
                        f"cifar-10-binary.tar.gz) in this folder. Received: {str(directory)!r}")
    records = []
    for file in files:
        raw = np.fromfile(file, dtype=np.uint8)
        if raw.size % CIFAR_RECORD:
            raise DataError(f"data.path: not a CIFAR-10 binary batch ({raw.size} bytes is not a whole number of "
                            f"{CIFAR_RECORD}-byte records). Received: {str(file)!r}")
        records.append(raw.reshape(-1, CIFAR_RECORD))
    table = np.concatenate(records)
    images = table[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), table[:, 0].astype(np.int64)
