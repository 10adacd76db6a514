"""Training stages: what each trains, how its loss is computed, how it is scored.

:func:`worldsim.train.train` runs the loop; a stage supplies the rest: ``build``
(the module), ``loss``, ``log_samples``, ``evaluate``, and the config that goes into
checkpoints (and must match on resume or load).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def make_stage(cfg: Any) -> Any:
    """The stage object for a TrainConfig (``cfg.stage``: autoencoder or dit)."""
    from worldsim.stages.autoencoder import AutoencoderStage
    from worldsim.stages.dit import DiTStage

    stages = {"autoencoder": AutoencoderStage, "dit": DiTStage}
    if cfg.stage not in stages:
        raise ValueError(f"unknown stage {cfg.stage!r}; valid stages: {', '.join(stages)}")
    return stages[cfg.stage](cfg)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8."""
    x = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def image_grid(rows: list[np.ndarray], gap: int = 1) -> np.ndarray:
    """Rows of (T, H, W, 3) uint8 frames -> one (R*H', T*W', 3) image with gaps."""
    t, h, w = rows[0].shape[:3]
    out = np.full((len(rows) * (h + gap) + gap, t * (w + gap) + gap, 3), 64, np.uint8)
    for r, frames in enumerate(rows):
        for c in range(t):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            out[y : y + h, x : x + w] = frames[c]
    return out
