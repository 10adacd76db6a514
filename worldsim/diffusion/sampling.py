"""Samplers for the rectified flow: Euler and Heun, with classifier-free guidance on
text and actions, for any choice of given (context) frames.

The sampler is separate from the network (diffusers' split): it takes a function
``velocity(x, t, text_drop, action_drop) -> v`` and integrates from noise (t = 1) to
data (t = 0). Given frames are held at a fixed small noise level throughout and
returned exactly as given. Every random draw comes from the ``torch.Generator``
passed in.

Guidance (two scales, text and actions)::

    v = v(none) + g_text (v(text) - v(none)) + g_action (v(text, actions) - v(text))

With both scales 1 this is ``v(text, actions)``, one network call per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from worldsim.diffusion.flow import add_noise

Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SamplerConfig:
    method: str = "euler"  # euler | heun
    steps: int = 4
    text_scale: float = 1.0
    action_scale: float = 1.0
    context_noise: float = 0.02  # fixed level of given frames (against drift)
    shift: float = 1.0  # > 1 spends more steps at high noise (SD3's timestep shift)

    def __post_init__(self) -> None:
        if self.method not in ("euler", "heun"):
            raise ValueError(f"sampler.method must be euler or heun, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"sampler.steps must be >= 1, got {self.steps}")


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """steps + 1 noise levels from 1 down to 0."""
    s = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * s / (1 + (shift - 1) * s)


def uses_guidance(cfg: SamplerConfig) -> bool:
    return cfg.text_scale != 1.0 or cfg.action_scale != 1.0


def combine_guidance(v_none: torch.Tensor, v_text: torch.Tensor, v_full: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The guided velocity from the three conditionings (see the module docstring)."""
    return v_none + cfg.text_scale * (v_text - v_none) + cfg.action_scale * (v_full - v_text)


def guided(velocity: Velocity, x: torch.Tensor, t: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The guided velocity at (x, t); batches the unconditional calls it needs."""
    b = x.shape[0]
    yes = torch.zeros(b, dtype=torch.bool, device=x.device)
    no = torch.ones(b, dtype=torch.bool, device=x.device)
    if not uses_guidance(cfg):
        return velocity(x, t, yes, yes)
    xs, ts = torch.cat([x, x, x]), torch.cat([t, t, t])
    v = velocity(xs, ts, torch.cat([no, yes, yes]), torch.cat([no, no, yes]))
    return combine_guidance(*v.chunk(3), cfg)


def sample(
    velocity: Velocity,
    shape: tuple[int, ...],
    cfg: SamplerConfig,
    generator: torch.Generator,
    *,
    context: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    start_t: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Generate latents of ``shape`` (B, T, C, H, W).

    Args:
      velocity: the network, see the module docstring.
      context: (B, T, C, H, W) latents of the given frames (others ignored).
      context_mask: (B, T) bool, True where a frame is given.
      start, start_t: begin from these latents noised to level ``start_t`` instead
        of pure noise (SDEdit-style edits).
    Returns the latents at t = 0, given frames replaced by their exact values.
    """
    b, frames = shape[:2]
    mask = torch.zeros(b, frames, dtype=torch.bool, device=device) if context_mask is None else context_mask.to(device)
    noise = torch.randn(shape, generator=generator).to(device)
    grid = time_grid(cfg.steps, cfg.shift, device) * start_t
    x = noise if start is None else add_noise(start.to(device), torch.full((b, frames), start_t, device=device), noise)
    if context is not None:
        ctx_noise = torch.randn(shape, generator=generator).to(device)
        ctx_t = torch.full((b, frames), cfg.context_noise, device=device)
        ctx_x = add_noise(context.to(device), ctx_t, ctx_noise)
    m = mask[:, :, None, None, None]
    for i in range(cfg.steps):
        t_now, t_next = grid[i], grid[i + 1]
        t = torch.where(mask, cfg.context_noise, t_now).to(device)
        if context is not None:
            x = torch.where(m, ctx_x, x)
        v = guided(velocity, x, t, cfg)
        x_next = x + (t_next - t_now) * v
        if cfg.method == "heun" and t_next > 0:
            t2 = torch.where(mask, cfg.context_noise, t_next)
            if context is not None:
                x_next = torch.where(m, ctx_x, x_next)
            v2 = guided(velocity, x_next, t2, cfg)
            x_next = x + (t_next - t_now) * (v + v2) / 2
        x = x_next
    if context is not None:
        x = torch.where(m, context.to(device), x)
    return x
