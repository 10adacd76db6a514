"""The ``render_mode="human"`` window both worlds share (matplotlib, imported on first use)."""

from __future__ import annotations

from typing import Any

import numpy as np


class HumanWindow:
    def __init__(self, title: str) -> None:
        self.title = title
        self._figure: Any = None
        self._image: Any = None

    def show(self, frame: np.ndarray, fps: float) -> None:
        import matplotlib.pyplot as plt

        if self._figure is None:
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
