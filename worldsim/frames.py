"""Frame conversions: uint8 pictures (..., H, W, 3) and the model's float tensors
(..., 3, H, W) in [-1, 1]. The one place these live."""

from __future__ import annotations

import numpy as np
import torch


def to_model(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1] on ``device``."""
    x = torch.as_tensor(np.asarray(frames) if isinstance(frames, np.ndarray) else frames).to(device)
    if x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got {x.dtype}")
    return x.movedim(-1, -3).float().div(127.5).sub(1.0)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) float in [-1, 1] -> (..., H, W, 3) uint8 (values outside are clipped)."""
    x = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()
