"""MNIST, Fashion-MNIST and CIFAR-10: from local files when data.path is set, else from Keras' dataset cache,
downloaded there once by keras.datasets when online."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dcgan_cli.data import arrays
from dcgan_cli.data.common import DataError
from dcgan_cli.files import one_line

# Where keras.datasets keeps each set, relative to <Keras home>/datasets, as files this module reads without pickle.
CACHED = {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist", "cifar10": None}


def keras_home() -> Path:
    """Keras' cache root: $KERAS_HOME, else ~/.keras (else /tmp/.keras where home is not writable), as Keras
    itself resolves it."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def load(name: str, path: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Images, labels and a description of the source for mnist, fashion_mnist or cifar10."""
    if path is not None:
        return (*_local(name, Path(path).expanduser()), str(path))
    cached = CACHED[name] and keras_home() / "datasets" / CACHED[name]
    if cached and cached.exists():
        return (*_local(name, cached), str(cached))
    return (*_download(name), f"keras.datasets.{name}")


def _local(name: str, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A local copy: an .npz file, IDX files (mnist, fashion_mnist) or the binary batches (cifar10)."""
    if not path.exists():
        raise DataError(f"data.path: no such file or folder. Received: {str(path)!r}")
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(f"data.path: for data.name {name}, expected a folder of the original files or an .npz. "
                            f"Received: {str(path)!r}")
        return arrays.load_npz(path)
    if name == "cifar10":
        return arrays.load_cifar_binary(path)
    return arrays.load_idx_dir(path)


def _download(name: str) -> tuple[np.ndarray, np.ndarray]:
    """keras.datasets' load_data (train and test splits together), with an offline failure explained."""
    import keras

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
              "cifar10": keras.datasets.cifar10}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # keras.utils.get_file raises a bare Exception when a download fails
        raise DataError(f"data.name {name}: could not download it through keras.datasets ({one_line(error)}). "
                        f"Offline, {_where(name)}. Received: data.path null") from None
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]).reshape(-1).astype(np.int64)


def _where(name: str) -> str:
    """Where to put the files so that no download is needed."""
    datasets = keras_home() / "datasets"
    if name == "mnist":
        return (f"put mnist.npz into {datasets}/, or point data.path at the IDX files (train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-...) or at an .npz")
    if name == "fashion_mnist":
        return (f"put the four Fashion-MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into {datasets}/fashion-mnist/, "
                "or point data.path at them")
    return ("point data.path at CIFAR-10's binary version (the folder cifar-10-batches-bin from "
            "cifar-10-binary.tar.gz) or at an .npz with x_train/x_test")
