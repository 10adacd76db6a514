"""The ``render_mode="human"`` window both worlds share (matplotlib, imported on first use)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

# Backends that draw to files, not to a screen (no DISPLAY, or MPLBACKEND=agg).
NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "cairo", "template", "pgf"}


class HumanWindow:
    def __init__(self, title: str) -> None:
        self.title = title
        self._figure: Any = None
        self._image: Any = None

    def show(self, frame: np.ndarray, fps: float) -> None:
        import matplotlib
        import matplotlib.pyplot as plt

        if self._figure is None:
            backend = matplotlib.get_backend().lower()
            if backend in NON_INTERACTIVE:
                warnings.warn(
                    f"render_mode='human' has no screen to draw on here (matplotlib backend {backend!r}: no display, or "
                    "MPLBACKEND set to a file backend); nothing is shown. Use render_mode='rgb_array' and save the frames, "
                    "or run where a display is (DISPLAY set, or under xvfb-run)", stacklevel=3,
                )
            self._figure = plt.figure(self.title)
            self._image = plt.imshow(frame, interpolation="nearest")
            plt.axis("off")
        self._image.set_data(frame)
        plt.pause(1.0 / fps)

    def close(self) -> None:
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = None
