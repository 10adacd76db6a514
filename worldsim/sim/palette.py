"""The fixed colour palette: every object gets its own flat colour, so that it can be
read off any frame by its colour alone (for ground truth and learned frames alike).

Colours are far apart in RGB: object colours at least 82.6 apart (Euclidean; yellow
and orange are the nearest pair, then red and brown at 103), which keeps them separable
after lossy video compression and in a model's blurry predictions. The occluders' greys
are not that far from the objects' (dark grey is 81 from brown): the evaluation's
detector is told a scene's fixtures and reads a pixel nearest one as no object
(``worldsim.evaluate.detect.fixture_colours``). The names are the words captions use.
"""

from __future__ import annotations

import numpy as np

# Object colours, in the order samplers draw them from. Names are caption words.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 30),
    "blue": (40, 90, 255),
    "yellow": (250, 220, 20),
    "magenta": (230, 40, 230),
    "cyan": (20, 220, 230),
    "orange": (255, 140, 0),
    "purple": (130, 40, 200),
    "pink": (255, 150, 190),
    "brown": (140, 80, 30),
}

# Reserved colours: never drawn for ordinary objects.
AGENT_COLOUR = ("white", (250, 250, 250))
PANE_COLOUR = ("glass", (160, 200, 240))
OCCLUDER_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (110, 110, 110),
    "dark grey": (70, 70, 70),
}
BACKGROUND = (0, 0, 0)

ALL_COLOURS: dict[str, tuple[int, int, int]] = {
    **OBJECT_COLOURS,
    AGENT_COLOUR[0]: AGENT_COLOUR[1],
    PANE_COLOUR[0]: PANE_COLOUR[1],
    **OCCLUDER_COLOURS,
}


def rgb(name: str) -> tuple[int, int, int]:
    """The 0–255 RGB triple of a palette colour, by name."""
    try:
        return ALL_COLOURS[name]
    except KeyError:
        raise ValueError(
            f"unknown colour {name!r}; the palette has: {', '.join(ALL_COLOURS)}"
        ) from None


def rgba01(name: str) -> tuple[float, float, float, float]:
    """The colour as floats in [0, 1] with alpha 1, as the engines take it."""
    r, g, b = rgb(name)
    return (r / 255.0, g / 255.0, b / 255.0, 1.0)


def palette_array(names: list[str]) -> np.ndarray:
    """(K, 3) uint8 array of the named colours."""
    return np.array([rgb(n) for n in names], dtype=np.uint8)


class ColourIds:
    """Maps flat-coloured pixels to instance ids through a colour table.

    With every object in its own flat colour this is an exact segmentation. A
    pixel within ``tolerance`` levels per channel of a table colour (a renderer's
    rounding) gets that colour's id; anything else gets 0 (background). The
    lookup is one index into a 32x32x32 table of quantised colours, which is
    unambiguous because table colours are far more than 8 levels apart.
    """

    def __init__(self, colours: dict[int, tuple[int, int, int]], *, tolerance: int = 4):
        lut = np.zeros((32, 32, 32), dtype=np.uint8)
        seen: dict[tuple[int, int, int], int] = {}
        for iid, c in colours.items():
            c = tuple(int(x) for x in c)
            if c in seen and seen[c] != iid:
                raise ValueError(f"ids {seen[c]} and {iid} share the colour {c}; colours must be unique")
            seen[c] = iid
            lo = [max(0, x - tolerance) >> 3 for x in c]
            hi = [min(255, x + tolerance) >> 3 for x in c]
            cell = lut[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
            if np.any((cell != 0) & (cell != iid)):
                raise ValueError(f"colour {c} (id {iid}) is too close to another table colour to tell apart")
            cell[...] = iid
        self._lut = lut.reshape(-1)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) uint8 ids."""
        q = (rgb >> 3).astype(np.intp)
        return self._lut.take((q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2])
