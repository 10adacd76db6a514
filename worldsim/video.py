"""Videos for people: grids of clips written as MP4 (or GIF). Never used for
training or metrics, which read the lossless episode files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worldsim.atomic import atomic_path


def image_grid(rows: list[np.ndarray], gap: int = 1) -> np.ndarray:
    """Rows of (T, H, W, 3) uint8 frames -> one (R*H', T*W', 3) image with gaps (a
    still for TensorBoard: each row a clip, left to right)."""
    t, h, w = rows[0].shape[:3]
    out = np.full((len(rows) * (h + gap) + gap, t * (w + gap) + gap, 3), 64, np.uint8)
    for r, frames in enumerate(rows):
        for c in range(t):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            out[y : y + h, x : x + w] = frames[c]
    return out


def tile(clips: Sequence[np.ndarray], *, cols: int | None = None, gap: int = 2, scale: int = 1) -> np.ndarray:
    """Lay out clips of (T_i, H, W, 3) uint8 in a grid -> (T, H', W', 3).

    Shorter clips hold their last frame; ``scale`` enlarges pixels (nearest) so
    small frames are visible; ``gap`` pixels of grey separate the cells.
    """
    if not clips:
        raise ValueError("tile needs at least one clip")
    T = max(len(c) for c in clips)
    H, W = clips[0].shape[1:3]
    for c in clips:
        if c.shape[1:] != (H, W, 3) or c.dtype != np.uint8:
            raise ValueError(f"every clip must be (T, {H}, {W}, 3) uint8, got {c.shape} {c.dtype}")
    cols = cols or int(np.ceil(np.sqrt(len(clips))))
    rows = int(np.ceil(len(clips) / cols))
    h, w = H * scale, W * scale
    out = np.full((T, rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3), 64, np.uint8)
    for k, c in enumerate(clips):
        r, q = divmod(k, cols)
        idx = np.minimum(np.arange(T), len(c) - 1)
        cell = c[idx].repeat(scale, axis=1).repeat(scale, axis=2)
        y, x = gap + r * (h + gap), gap + q * (w + gap)
        out[:, y : y + h, x : x + w] = cell
    return out


def write_video(path: str | os.PathLike[str], frames: np.ndarray, *, fps: float) -> Path:
    """Write (T, H, W, 3) uint8 frames atomically as MP4 (H.264) or GIF, by suffix.

    Frame sizes are padded to even numbers for H.264. Returns the path written.
    """
    import imageio.v2 as imageio

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    with atomic_path(path, keep_suffix=True) as tmp:
        if path.suffix == ".gif":
            imageio.mimwrite(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        else:
            ph, pw = frames.shape[1] % 2, frames.shape[2] % 2
            if ph or pw:
                frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)))
            imageio.mimwrite(
                tmp, list(frames), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                pixelformat="yuv420p", quality=8,
            )
    return path
