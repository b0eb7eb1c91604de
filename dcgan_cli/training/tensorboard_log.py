"""output.tensorboard: scalars and sample grids as TensorBoard event files, written with TensorBoard's own writer
(no TensorFlow needed, so every Keras backend logs the same way)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

DIRECTORY = "tensorboard"
INSTALL = 'pip install "dcgan-cli[tensorboard]"'


def available() -> bool:
    """Whether the tensorboard package (its writer and protocol buffers) can be imported."""
    try:
        import tensorboard.summary.writer.event_file_writer  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardWriter:
    """One run's event file in RUN/tensorboard/. Opened at `start` > 0 (a resume or a rollback), it first writes
    a restart marker, so TensorBoard drops the events the abandoned steps after `start` had logged."""

    def __init__(self, run_dir: Path, *, start: int):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2 = event_pb2
        self.writer = EventFileWriter(str(Path(run_dir) / DIRECTORY))
        if start > 0:  # TensorBoard drops the earlier events of the marker's step and later
            self._write(start + 1, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))

    def _write(self, step: int, **fields) -> None:
        self.writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=step, **fields))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One scalar per tag ("losses/g", "scores/frechet_distance", ...) at `step`."""
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                                             for tag, value in values.items()])
        self._write(step, summary=summary)

    def image(self, step: int, tag: str, picture: np.ndarray) -> None:
        """A uint8 image (H, W, C) as a PNG under `tag`."""
        from tensorboard.compat.proto import summary_pb2

        height, width, channels = picture.shape
        buffer = io.BytesIO()
        Image.fromarray(picture[..., 0] if channels == 1 else picture).save(buffer, format="PNG")
        encoded = summary_pb2.Summary.Image(height=height, width=width, colorspace=channels,
                                            encoded_image_string=buffer.getvalue())
        self._write(step, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=encoded)]))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def scalar_tags(record: dict, *, adaptive: bool) -> dict[str, float]:
    """A metrics.jsonl record's numbers as TensorBoard tags, grouped by what they are; ADA's r_t and strength p
    only where hack 23 (`adaptive`) moves them."""
    names = {"d_loss_real": "losses/d_real", "d_loss_fake": "losses/d_fake", "g_loss": "losses/g",
             "d_real_mean": "d_output/real", "d_fake_mean": "d_output/fake", "g_grad_norm": "gradients/g",
             "images_per_s": "speed/images_per_s"}
    if adaptive:
        names.update({"d_real_sign": "d_output/real_sign", "augment_p": "augment/p"})
    tags = {tag: record[key] for key, tag in names.items() if key in record}
    for key, value in record.get("probe", {}).items():
        tags[f"health/{key}"] = value
    for key, value in record.get("eval", {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            tags[f"scores/{key}"] = value
    return tags
