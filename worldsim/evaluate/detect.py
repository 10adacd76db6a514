"""Reading objects off frames by their palette colour (the evaluation detector).

Used on ground truth and on predictions alike, so its own error cancels when the
two are compared; it is also what finds a shattered pane's fragments.
"""

from __future__ import annotations

import numpy as np


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
