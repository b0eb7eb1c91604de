"""Grids and PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dcgan_cli import images


def numbered(n: int, h: int = 16, w: int = 16, c: int = 1) -> np.ndarray:
    return (np.arange(n, dtype=np.uint8)[:, None, None, None] * 3 + 10) * np.ones((n, h, w, c), np.uint8)


def test_grid_is_near_square_and_at_least_512_wide():
    out = images.grid(numbered(64))
    assert out.shape == (548, 548, 1)  # 8 x 8 tiles of 16 + 1 px separators = 137 px, enlarged 4x
    assert out[4 * 1, 4 * 1, 0] == numbered(1)[0, 0, 0, 0]


def test_grid_places_images_in_row_major_order_and_pads_the_last_row():
    out = images.grid(numbered(10, 8, 8), min_width=1)
    assert out.shape == (3 * 9 + 1, 4 * 9 + 1, 1)  # 10 images -> 4 columns, 3 rows
    for i in range(10):
        top, left = 1 + (i // 4) * 9, 1 + (i % 4) * 9
        assert (out[top:top + 8, left:left + 8] == numbered(10)[i, 0, 0, 0]).all()


def test_grid_of_rgb_images_keeps_its_channels():
    assert images.grid(numbered(4, 32, 32, 3)).shape[-1] == 3


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8, 1), np.float32), np.zeros((0, 8, 8, 1), np.uint8),
                                 np.zeros((8, 8, 1), np.uint8)])
def test_grid_refuses_what_it_cannot_draw(bad):
    with pytest.raises(ValueError, match="Received"):
        images.grid(bad)


def test_save_grid_writes_a_png_and_no_temporary(tmp_path):
    path = images.save_grid(numbered(9), tmp_path / "sub" / "grid.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "L" and png.size == (520, 520)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    rgb = images.save_grid(numbered(9, c=3), tmp_path / "rgb.png")
    with Image.open(rgb) as png:
        assert png.mode == "RGB"


def test_save_each_writes_one_png_per_image(tmp_path):
    paths = images.save_each(numbered(3), tmp_path / "each")
    assert [p.name for p in paths] == ["000000.png", "000001.png", "000002.png"]
    with Image.open(paths[2]) as png:
        assert png.size == (16, 16) and np.asarray(png)[0, 0] == numbered(3)[2, 0, 0, 0]
