"""Videos and stills for people: sizes, labels, step numbers, every format written."""

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from worldsim.video import BACKGROUND, labelled_grid, write_labelled


def clips(n=3, t=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_tiles_are_enlarged_without_blurring_and_labelled():
    a, b = clips(2), clips(2, seed=1)
    v = labelled_grid([("bouncing_balls #0", a), ("shatter #1", b)], ["truth", "learned"])
    assert v.shape[0] == 6 and v.shape[1] >= 2 * 256 and v.shape[2] >= 2 * 256
    k = 256 // 32
    tile = next((y, x) for y in range(v.shape[1]) for x in range(v.shape[2]) if (v[0, y, x] == a[0][0, 0, 0]).all() and y > 20)
    y, x = tile  # the first pixel of the first tile: a k x k block of one colour (nearest, no blur)
    assert (v[0, y : y + k, x : x + k] == a[0][0, 0, 0]).all()
    title = v[0, :20]
    assert (title != BACKGROUND).any()  # the title row holds text
    assert not np.array_equal(v[0, :20, :80], v[5, :20, :80])  # the step number changes


def test_every_format_is_written_and_reads_back(tmp_path):
    paths = write_labelled(tmp_path / "cmp", [("row 0", clips(3)), ("row 1", clips(3, seed=2))], ["truth", "learned", "difference"], fps=10)
    video = imageio.mimread(paths["mp4"], memtest=False)
    assert len(video) == 6 and video[0].shape[0] >= 2 * 256 and video[0].shape[1] >= 3 * 256
    assert (video[0][:18] != np.asarray(BACKGROUND)).any(axis=-1).mean() > 0.005  # the title row is not blank
    gif = imageio.mimread(paths["gif"])
    assert len(gif) == 6
    sheet = Image.open(paths["png"])
    assert sheet.size[0] > 6 * 128 and sheet.size[1] > 6 * 128  # six steps across; a row per (episode, column): 2 x 3
