"""Small file helpers every writer shares: whole-or-nothing writes, a lock for caches that parallel runs share,
errors as one short line, notes on stderr."""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from filelock import FileLock


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file whole or not at all: `write` fills a temporary file beside `path`, which is flushed to disk and
    renamed over `path`; on any failure the temporary is removed and `path` is untouched. The temporary's name is
    unique to the process and thread, so writers racing on one path never share it: the last rename wins, whole."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold `path`.lock, an exclusive lock across processes (filelock), while a shared cache entry is checked and
    built: parallel runs wait for the first one's result instead of building it twice."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        yield


def fsync(path: str | Path) -> None:
    """Flush a file's or a directory's contents to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most `limit` characters (its class name when it has none)."""
    return " ".join(str(error).split())[:limit] or error.__class__.__name__


def to_stderr(message: str) -> None:
    """A note for the user (what is being trained, what was skipped) on stderr, beside the progress bars."""
    print(message, file=sys.stderr)


def read_jsonl(path: str | Path) -> list:
    """The JSON values of a JSON-lines file in order ([] when it does not exist); a line a crash cut short is
    skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found
