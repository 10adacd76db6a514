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
    steps: int | None = None  # None: the trained world's own choice (flow.sampler_steps), resolved by the simulator; sample() needs a number
    text_scale: float = 1.0
    action_scale: float = 1.0
    context_noise: float = 0.02  # fixed level of given frames (against drift)
    shift: float = 1.0  # > 1 spends more steps at high noise (SD3's timestep shift)

    def __post_init__(self) -> None:
        if self.method not in ("euler", "heun"):
            raise ValueError(f"sampler.method must be euler or heun, got {self.method!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sampler.steps must be >= 1 (or null: the model's own), got {self.steps}")


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """steps + 1 noise levels from 1 down to 0."""
    s = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * s / (1 + (shift - 1) * s)


def uses_guidance(cfg: SamplerConfig) -> bool:
    return cfg.text_scale != 1.0 or cfg.action_scale != 1.0


def combine_guidance(v_none: torch.Tensor, v_text: torch.Tensor, v_full: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The guided velocity from the three conditionings (see the module docstring)."""
    return v_none + cfg.text_scale * (v_text - v_none) + cfg.action_scale * (v_full - v_text)


GUIDANCE_ROWS = 3  # [no caption, no actions; caption, no actions; caption and actions]


def guidance_drops(batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The text and action drop flags (3B,) of a guidance batch: the batch repeated
    three times as [no caption, no actions; caption, no actions; caption and actions]
    (the order :func:`combine_guidance` reads)."""
    drop = torch.ones(batch, dtype=torch.bool, device=device)
    keep = torch.zeros(batch, dtype=torch.bool, device=device)
    return torch.cat([drop, keep, keep]), torch.cat([drop, drop, keep])


def guided(velocity: Velocity, x: torch.Tensor, t: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The guided velocity at (x, t); batches the unconditional calls it needs."""
    b = x.shape[0]
    if not uses_guidance(cfg):
        keep = torch.zeros(b, dtype=torch.bool, device=x.device)
        return velocity(x, t, keep, keep)
    text_drop, action_drop = guidance_drops(b, x.device)
    v = velocity(torch.cat([x] * GUIDANCE_ROWS), torch.cat([t] * GUIDANCE_ROWS), text_drop, action_drop)
    return combine_guidance(*v.chunk(GUIDANCE_ROWS), cfg)


def ode_step(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, t_now: torch.Tensor, t_next: torch.Tensor, method: str
) -> torch.Tensor:
    """One Euler or Heun step of dx/dt = velocity(x, t) from ``t_now`` to ``t_next``
    (Heun's second evaluation is skipped on the last step, at t = 0)."""
    v = velocity(x, t_now)
    if method == "heun" and t_next > 0:
        v = (v + velocity(x + (t_next - t_now) * v, t_next)) / 2
    return x + (t_next - t_now) * v


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
    if cfg.steps is None:
        raise ValueError("sample() needs SamplerConfig(steps=N): steps=None means a trained world's own steps, which only "
                         "a loaded world knows (LearnedSimulator resolves it; pass its config's flow.sampler_steps)")
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

    def given(x: torch.Tensor) -> torch.Tensor:  # given frames held at their fixed noise level
        return x if context is None else torch.where(m, ctx_x, x)

    def field(x: torch.Tensor, t_now: torch.Tensor) -> torch.Tensor:
        return guided(velocity, given(x), torch.where(mask, cfg.context_noise, t_now).to(device), cfg)

    for i in range(cfg.steps):
        x = ode_step(field, given(x), grid[i], grid[i + 1], cfg.method)
    if context is not None:
        x = torch.where(m, context.to(device), x)
    return x
