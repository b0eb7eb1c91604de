"""Where a training step's real images come from: the uint8 dataset placed on the device once when it fits
train.device_data_fraction of the device's memory, else each step's batch streamed by a prefetching thread."""

from __future__ import annotations

import queue
import threading
from typing import Callable

import keras
import numpy as np

from dcgan_cli import backend
from dcgan_cli.state import draws
from dcgan_cli.backend import compile_function
from dcgan_cli.config import Config


class Prefetcher:
    """Streamed data: a thread prepares the coming steps' uint8 batches (their indices drawn on the device, the
    images gathered on the host and sent) while the current step runs, at most `depth` steps ahead."""

    def __init__(self, prepare: Callable[[int], object], *, first: int, last: int, depth: int = 2):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._produce, args=(prepare, first, last), daemon=True,
                                       name="prefetch")
        self.thread.start()

    def _produce(self, prepare: Callable[[int], object], first: int, last: int) -> None:
        for step in range(first, last + 1):
            try:
                item = (step, prepare(step), None)
            except Exception as error:  # handed to the loop, which raises it
                item = (step, None, error)
            while not self.stopping.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None or self.stopping.is_set():
                return

    def next(self, step: int):
        prepared, batch, error = self.queue.get()
        if error is not None:
            raise error
        assert prepared == step, "the prefetcher runs in step order"
        return batch

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()


class Feed:
    """Where the steps' uint8 real images come from: the whole dataset placed on the device once when it fits
    train.device_data_fraction of the device's memory (each step gathers its batch there), else each step's batch,
    gathered on the host and sent by a prefetching thread while the previous step runs."""

    def __init__(self, images: np.ndarray, step_draws: draws.Draws, *, cfg: Config, labels: np.ndarray | None = None):
        self.images, self.last = images, cfg.train.steps
        self.labels = None if labels is None else np.asarray(labels, np.int32)  # hack 21: sent with the images
        self.placed = backend.place_dataset(images, fraction=cfg.train.device_data_fraction)
        if self.placed is not None and self.labels is not None:
            self.placed = (self.placed, keras.ops.convert_to_tensor(self.labels))
        self.batch_index = compile_function(step_draws.step_index)
        self.prefetcher: Prefetcher | None = None

    @property
    def resident(self) -> bool:
        return self.placed is not None

    def __call__(self, step: int):
        """Step `step`'s source: the resident dataset, or its own batches (d_steps * N, H, W, C); with labels, a
        pair (images, labels) of either."""
        if self.resident:
            return self.placed
        if self.prefetcher is None:
            self.prefetcher = Prefetcher(self._batch, first=step, last=self.last)
        return self.prefetcher.next(step)

    def _batch(self, step: int):
        index = keras.ops.convert_to_numpy(self.batch_index(backend.int32_argument(step)))
        if self.labels is None:
            return backend.distribute_batch(self.images[index])
        return backend.distribute_batch(self.images[index]), backend.distribute_batch(self.labels[index])

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
