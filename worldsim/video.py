"""Videos and stills for people: labelled grids of clips, upscaled without blurring,
written as MP4, GIF and a PNG contact sheet. Never used for training or metrics, which
read the lossless episode files.

:func:`labelled_grid` lays clips out with a title row naming each column, a label on
each row and the step number on every frame; :func:`contact_sheet` shows chosen steps
of each row side by side; :func:`write_labelled` writes all three files at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


BACKGROUND = (32, 32, 32)
INK = (235, 235, 235)
TILE_PX = 256  # the default size of one clip's frame in a video for people


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _upscale(frames: np.ndarray, tile: int) -> np.ndarray:
    """(T, H, W, 3) enlarged by a whole factor (nearest: no blurring) to at least ``tile`` px high."""
    k = max(1, -(-tile // frames.shape[1]))
    return frames.repeat(k, axis=1).repeat(k, axis=2)


def labelled_grid(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str], *, tile: int = TILE_PX, first_step: int = 1, step_label: str = "step",
    counter: bool = True,
) -> np.ndarray:
    """A video (T, H', W', 3): one row per ``(label, clips)``, one clip per column
    (``columns`` names them in a title row), every clip enlarged to at least ``tile`` px
    (nearest), and "step N" on every frame (counted from ``first_step``). Shorter clips
    hold their last frame."""
    if not rows or any(len(clips) != len(columns) for _, clips in rows):
        raise ValueError(f"every row needs one clip per column ({len(columns)}: {list(columns)})")
    big = [[_upscale(np.asarray(c), tile) for c in clips] for _, clips in rows]
    th, tw = big[0][0].shape[1:3]
    T = max(len(c) for r in big for c in r)
    gap, title = 4, max(24, th // 10)
    font = _font(max(12, title * 2 // 3))
    label_w = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(label, font=font) for label, _ in rows) + 2 * gap
    label_w = int(max(label_w, 10))
    H = title + len(rows) * (th + gap) + gap
    W = label_w + len(columns) * (tw + gap) + gap
    canvas = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        x = label_w + gap + j * (tw + gap)
        draw.text((x + tw / 2, title / 2), name, fill=INK, font=font, anchor="mm")
    for i, (label, _) in enumerate(rows):
        draw.text((gap, title + gap + i * (th + gap) + th / 2), label, fill=INK, font=font, anchor="lm")
    base = np.asarray(canvas)
    out = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        if counter:
            frame = Image.fromarray(base.copy())
            ImageDraw.Draw(frame).text((gap, title / 2), f"{step_label} {first_step + t}", fill=INK, font=font, anchor="lm")
            out[t] = np.asarray(frame)
        else:
            out[t] = base
        for i, clips in enumerate(big):
            for j, c in enumerate(clips):
                y, x = title + gap + i * (th + gap), label_w + gap + j * (tw + gap)
                out[t, y : y + th, x : x + tw] = c[min(t, len(c) - 1)]
    return out


def contact_sheet(
    rows: Sequence[tuple[str, np.ndarray]], steps: Sequence[int], *, tile: int = 128, first_step: int = 1, step_label: str = "step"
) -> np.ndarray:
    """A still (H', W', 3): for each ``(label, clip)`` row, the clip's frames at ``steps``
    (counted from ``first_step``) side by side, each enlarged to at least ``tile`` px."""
    steps = [s for s in steps if 0 <= s - first_step < max(len(c) for _, c in rows)]
    cells = [(label, [_upscale(np.asarray(clip)[min(s - first_step, len(clip) - 1)][None], tile)[0] for s in steps]) for label, clip in rows]
    grid = labelled_grid([(label, [f[None] for f in frames]) for label, frames in cells], [f"{step_label} {s}" for s in steps], tile=tile,
                         counter=False)
    return grid[0]


def write_labelled(
    stem: str | os.PathLike[str], rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str], *, fps: float,
    tile: int = TILE_PX, gif: bool = True, sheet_columns: Sequence[int] | None = None, sheet_steps: int = 6, first_step: int = 1,
) -> dict[str, Path]:
    """Write ``stem.mp4`` (and ``stem.gif``) of :func:`labelled_grid` and ``stem.png``, a
    contact sheet of ``sheet_steps`` evenly spaced steps of the columns ``sheet_columns``
    (default: all) of every row. Returns the paths."""
    stem = Path(stem)
    video = labelled_grid(rows, columns, tile=tile, first_step=first_step)
    out = {"mp4": write_video(stem.with_suffix(".mp4"), video, fps=fps)}
    if gif:
        out["gif"] = write_video(stem.with_suffix(".gif"), labelled_grid(rows, columns, tile=max(64, tile // 2), first_step=first_step), fps=fps)
    T = max(len(c) for _, clips in rows for c in clips)
    chosen = sorted({first_step + round(i * (T - 1) / max(1, sheet_steps - 1)) for i in range(min(sheet_steps, T))})
    cols = list(range(len(columns))) if sheet_columns is None else list(sheet_columns)
    sheet_rows = [(f"{label}: {columns[j]}", clips[j]) for label, clips in rows for j in cols]
    sheet = contact_sheet(sheet_rows, chosen, tile=min(tile, 128), first_step=first_step)
    with atomic_path(stem.with_suffix(".png"), keep_suffix=True) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    out["png"] = stem.with_suffix(".png")
    return out
