"""Pixel metrics that need no pretrained weights: MSE, PSNR, SSIM.

Frames are uint8 arrays or float tensors; everything is computed per frame in
[0, 1] so numbers compare across sources. Training logs them, evaluation reports them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _unit(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 or (..., 3, H, W) float in [-1, 1] -> (N, 3, H, W) float in [0, 1]."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ValueError(f"numpy frames must be uint8 (..., H, W, 3), got {x.dtype}")
        t = torch.from_numpy(x).float().div(255.0)
        return t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2)
    t = x.detach().float()
    return ((t.reshape(-1, *t.shape[-3:]) + 1.0) / 2.0).clamp(0.0, 1.0)


def mse(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-frame mean squared error in [0, 1] units: (N,)."""
    x, y = _unit(a), _unit(b)
    return (x - y).square().mean(dim=(1, 2, 3)).numpy()


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, max_db: float = 100.0) -> np.ndarray:
    """Per-frame peak signal-to-noise ratio (dB), capped at ``max_db`` for identical frames."""
    m = mse(a, b)
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(1.0 / np.maximum(m, 1e-20)), max_db)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-frame structural similarity (Wang et al. 2004: 11x11 Gaussian window,
    sigma 1.5, K1 0.01, K2 0.03), averaged over channels: (N,)."""
    x, y = _unit(a), _unit(b)
    c = x.shape[1]
    w = _gaussian().to(x)[None, None].repeat(c, 1, 1, 1)  # (C, 1, 11, 11)
    pad = w.shape[-1] // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), w, groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()
