"""Reading objects off frames by their palette colour (the evaluation detector).

Used on ground truth and on predictions alike, so its own error cancels when the
two are compared; it is also what finds a shattered pane's fragments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.sim import palette


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 4-connected components of a boolean (H, W) mask.

    Returns ``(labels, n)``: ``labels`` (H, W) int32 with 0 outside the mask and
    1..n for the components, numbered in raster order of their first pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    parent = np.arange(h * w + 1)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    idx = np.arange(1, h * w + 1).reshape(h, w)
    # union with the left and upper neighbours
    for a, b in (
        (idx[:, 1:][mask[:, 1:] & mask[:, :-1]], idx[:, :-1][mask[:, 1:] & mask[:, :-1]]),
        (idx[1:, :][mask[1:, :] & mask[:-1, :]], idx[:-1, :][mask[1:, :] & mask[:-1, :]]),
    ):
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    labels = np.zeros((h, w), np.int32)
    roots = np.array([find(int(i)) for i in idx[mask]], dtype=np.int64)
    if len(roots) == 0:
        return labels, 0
    _, first = np.unique(roots, return_index=True)
    order = np.argsort(first)
    uniq = np.unique(roots)[order]
    remap = {int(r): k + 1 for k, r in enumerate(uniq)}
    labels[mask] = [remap[int(r)] for r in roots]
    return labels, len(uniq)


def fixture_colours(fixtures: Any) -> np.ndarray:
    """The colours of a scene's fixtures (its screens), to pass as ``others``: (M, 3).
    ``fixtures``: a spec's ``FixtureSpec``s, or their dicts (a manifest line's params)."""
    cols = [palette.rgb(f["colour"] if isinstance(f, dict) else f.colour) for f in fixtures or ()]
    return np.array(cols, np.float32).reshape(-1, 3)


def classify_pixels(
    frames: np.ndarray, colours: np.ndarray, *, background: tuple[int, int, int] = (0, 0, 0), max_distance: float = 90.0, others: np.ndarray | None = None
) -> np.ndarray:
    """Assign every pixel to the nearest of ``colours`` (K, 3) or the background.

    frames: (..., H, W, 3) uint8. Returns (..., H, W) int16: k + 1 for colour k, 0 for
    background, for pixels farther than ``max_distance`` (RGB, Euclidean) from every
    colour (blurry in-between shades of a prediction are not objects), and for pixels
    nearest one of ``others`` (M, 3): colours in the frame that are no object's, the
    scene's fixtures (:func:`fixture_colours`; a dark grey screen is 81 from brown,
    nearer than black, and without it would be read as a brown ball).
    """
    px = frames.astype(np.float32)
    colours = np.asarray(colours, np.float32).reshape(-1, 3)
    others = np.zeros((0, 3), np.float32) if others is None else np.asarray(others, np.float32).reshape(-1, 3)
    table = np.concatenate([np.asarray([background], np.float32), colours, others])  # (1 + K + M, 3)
    d2 = ((px[..., None, :] - table) ** 2).sum(-1)  # (..., H, W, 1 + K + M)
    best = d2.argmin(-1).astype(np.int16)
    best[(d2.min(-1) > max_distance**2) | (best > len(colours))] = 0
    return best


def detect_objects(
    frames: np.ndarray,
    colours: np.ndarray,
    *,
    min_pixels: int = 1,
    background: tuple[int, int, int] = (0, 0, 0),
    max_distance: float = 90.0,
    others: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Objects read off frames by their palette colours.

    Args:
      frames: (T, H, W, 3) uint8.
      colours: (K, 3) the RGB colour of each object to find.
      min_pixels: fewer pixels of a colour than this and the object is absent.
      others: colours in the frames that are no object's: the scene's fixtures (see :func:`classify_pixels`).

    Returns ``centroids`` (T, K, 2) in pixels (x right, y down; pixel (c, r) centred
    at (c + 0.5, r + 0.5); NaN where absent), ``areas`` (T, K) pixel counts and
    ``present`` (T, K) bool.
    """
    labels = classify_pixels(frames, colours, background=background, max_distance=max_distance, others=others)  # (T, H, W)
    T, H, W = labels.shape
    K = len(colours)
    flat = labels.reshape(T, -1).astype(np.int64)
    offsets = (np.arange(T)[:, None] * (K + 1) + flat).ravel()
    areas = np.bincount(offsets, minlength=T * (K + 1)).reshape(T, K + 1)[:, 1:]
    xs = np.tile(np.arange(W) + 0.5, H)
    ys = np.repeat(np.arange(H) + 0.5, W)
    sx = np.bincount(offsets, weights=np.tile(xs, T), minlength=T * (K + 1)).reshape(T, K + 1)[:, 1:]
    sy = np.bincount(offsets, weights=np.tile(ys, T), minlength=T * (K + 1)).reshape(T, K + 1)[:, 1:]
    present = areas >= min_pixels
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack([sx / areas, sy / areas], -1)
    centroids[~present] = np.nan
    return {"centroids": centroids.astype(np.float32), "areas": areas.astype(np.int32), "present": present}
