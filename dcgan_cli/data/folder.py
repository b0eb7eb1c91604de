"""A folder of image files, decoded once into a uint8 .npy cache and memory-mapped on every later run.

The cache is keyed by the folder, every image's relative path, size and modification time, the image size and
the channel count, so any change to the folder or the model shape decodes again, and nothing else does. Runs that
start at once share it: one decodes under a lock, the others wait and map its result.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from dcgan_cli.data.common import DataError, Dataset, balanced_indices, cache_root, fit_image
from dcgan_cli.files import exclusive, write_atomically

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
CHUNK = 512  # images decoded per batch of thread work


def list_images(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every image file under root, recursively, in sorted order; hidden
    files and folders are skipped."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = Path(directory) / name
            stat = path.stat()
            found.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return found


def listed(root: str | Path, *, limit: int | None,
           subset: str = "first") -> tuple[Path, list[tuple[str, int, int]]]:
    """The folder and `limit` of its image files (list_images): the first ones, or with `subset` balanced the
    first of each class subfolder in turn (common.balanced_indices); or a DataError naming data.path."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data.path: no such folder. Received: {str(root)!r}")
    if not root.is_dir():
        raise DataError(f"data.path: expected a folder of images for data.name folder. Received: {str(root)!r}")
    files = list_images(root)
    if subset == "balanced" and limit is not None and files:
        names = class_folders(files)
        if len(names) < 2:
            raise DataError("data.subset: balanced needs class subfolders (at least two) to balance; use first. "
                            f"Received: {str(root)!r}")
        folders = [name.split("/", 1)[0] for name, _, _ in files]
        files = [files[i] for i in balanced_indices(np.array([names.index(f) for f in folders]), limit)]
    files = files[:limit]
    if not files:
        raise DataError(f"data.path: no image files ({', '.join(e[1:] for e in EXTENSIONS)}) under this folder. "
                        f"Received: {str(root)!r}")
    return root, files


def class_folders(files: list[tuple[str, int, int]]) -> list[str]:
    """The first-level subfolders the files sit in, sorted, when every file sits in one (its class); else []."""
    if any("/" not in name for name, _, _ in files):
        return []
    return sorted({name.split("/", 1)[0] for name, _, _ in files})


def load(root: str | Path, *, size: int, channels: int, limit: int | None, cache_dir: str | Path | None,
         progress: bool, log: Callable[[str], None], subset: str = "first") -> Dataset:
    """The images under `root` (listed) as uint8 (N, size, size, channels), from the cache when it is current."""
    root, files = listed(root, limit=limit, subset=subset)
    cache = cache_root(cache_dir)
    key = _key(root, files, size, channels)
    stem = cache / f"folder-{key}"
    meta_path = stem.with_suffix(".json")
    if not (meta_path.is_file() and stem.with_suffix(".npy").is_file()):
        with exclusive(stem):  # parallel runs (dcgan ablate --jobs) decode once; the others wait, then read it
            if not meta_path.is_file():
                _decode_into_cache(root, files, stem, size=size, channels=channels, progress=progress, log=log)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    labels_path = stem.with_suffix(".labels.npy")
    return Dataset(
        images=np.load(stem.with_suffix(".npy"), mmap_mode="r"),
        labels=np.load(labels_path) if labels_path.is_file() else None,
        class_names=tuple(meta["class_names"]) if meta["class_names"] is not None else None,
        source=str(root),
        cache=stem.with_suffix(".npy"),
    )


def _key(root: Path, files: list[tuple[str, int, int]], size: int, channels: int) -> str:
    identity = json.dumps([CACHE_VERSION, str(root.resolve()), size, channels, files])
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def _decode_one(path: Path, size: int, channels: int) -> np.ndarray | None:
    """One image file as uint8 (size, size, channels) (first frame of an animation, EXIF rotation applied), or
    None when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.draft("RGB" if channels == 3 else "L", (size * 2, size * 2))  # JPEG: decode at reduced scale
            return fit_image(ImageOps.exif_transpose(image), size=size, channels=channels)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None


def decode_chunks(root: Path, files: list[tuple[str, int, int]], *, size: int, channels: int, progress: bool):
    """Decode the files (as list_images gives them) CHUNK at a time on a thread pool: yields (index of the chunk's
    first file, uint8 (len(chunk), size, size, channels) with zeros where unreadable, bool readable (len(chunk),))."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            tqdm(total=len(files), desc="decode", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start:start + CHUNK]
            images = np.zeros((len(chunk), size, size, channels), dtype=np.uint8)
            readable = np.zeros(len(chunk), dtype=bool)
            for offset, image in enumerate(pool.map(lambda f: _decode_one(root / f[0], size, channels), chunk)):
                if image is not None:
                    images[offset], readable[offset] = image, True
            bar.update(len(chunk))
            yield start, images, readable


def report_unreadable(root: Path, files: list[tuple[str, int, int]], readable: np.ndarray, *,
                       log: Callable[[str], None], key: str) -> list[str]:
    """The names of the unreadable files, warned about in one line; a DataError naming `key` when none was read."""
    failed = [name for (name, _, _), ok in zip(files, readable) if not ok]
    if len(failed) == len(files):
        raise DataError(f"{key}: none of the {len(files)} image files could be read (first: {failed[0]}). "
                        f"Received: {str(root)!r}")
    if failed:
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        log(f"warning: skipped {len(failed)} of {len(files)} image files that could not be read: {shown}")
    return failed


def _decode_into_cache(root: Path, files: list[tuple[str, int, int]], stem: Path, *, size: int, channels: int,
                       progress: bool, log: Callable[[str], None]) -> None:
    """Decode every file into stem.npy (written under a temporary name, then renamed), its labels into
    stem.labels.npy where every image sits in a class subfolder, and stem.json last, marking the cache whole."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    temporary = stem.parent / f".{stem.name}.{os.getpid()}.tmp.npy"
    shape = (len(files), size, size, channels)
    decoded = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
    readable = np.zeros(len(files), dtype=bool)
    try:
        for start, images, ok in decode_chunks(root, files, size=size, channels=channels, progress=progress):
            decoded[start:start + len(images)] = images
            readable[start:start + len(images)] = ok
        failed = report_unreadable(root, files, readable, log=log, key="data.path")
        if failed:
            compact = _compact(decoded, readable, temporary)
            del decoded
            os.replace(compact, temporary)
            decoded = np.load(temporary, mmap_mode="r+")
        decoded.flush()
        del decoded
        os.replace(temporary, stem.with_suffix(".npy"))
    finally:
        temporary.unlink(missing_ok=True)
    kept = [name for (name, _, _), ok in zip(files, readable) if ok]
    class_names = _write_labels(kept, stem.with_suffix(".labels.npy"))
    meta = {"version": CACHE_VERSION, "source": str(root), "images": len(kept), "skipped": failed,
            "class_names": class_names}
    write_atomically(stem.with_suffix(".json"), lambda file: file.write(json.dumps(meta, indent=1).encode()))


def _compact(decoded: np.memmap, readable: np.ndarray, temporary: Path) -> Path:
    """Copy the readable rows of `decoded` into a new .npy beside `temporary`, in slices; return its path."""
    path = temporary.with_name(temporary.name.replace(".tmp.npy", ".compact.npy"))
    kept = np.flatnonzero(readable)
    compact = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(kept), *decoded.shape[1:]))
    for start in range(0, len(kept), 4096):
        compact[start:start + 4096] = decoded[kept[start:start + 4096]]
    compact.flush()
    return path


def _write_labels(names: list[str], path: Path) -> list[str] | None:
    """Class indices from first-level subfolder names, when every image sits in one; returns the class names."""
    class_names = class_folders([(name, 0, 0) for name in names])
    if not names or not class_names:
        return None
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[name.split("/", 1)[0]] for name in names], dtype=np.int64)
    write_atomically(path, lambda file: np.save(file, labels))
    return class_names
