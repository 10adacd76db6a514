"""Rectified flow with per-frame noise levels (the training objective).

A latent frame ``x0`` at noise level ``t`` in [0, 1] is ``x_t = (1 - t) x0 + t eps``;
the model predicts the velocity ``v = eps - x0`` (SD3, Open-Sora 1.2). Every frame of
a clip gets its own level, drawn logit-normal (most mass mid-way, where learning is
hardest). Frames chosen as *context* (first k, last k, both ends, a random subset, or
none) sit near ``t = 0`` with a little noise (against drift when the model's own
outputs become its context), and the loss counts only the other frames: one model then
does text-to-video (no context), image-to-video and forward extension (first frames),
backward extension (last frames), connecting clips (both ends) and the simulator
(block-causal, first frames). Captions and actions are dropped at random, separately,
for classifier-free guidance.

Every random draw comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

MASK_KINDS = ("none", "first", "last", "ends", "random")


@dataclass
class FlowConfig:
    """Training distribution of noise levels, context masks and dropouts."""

    logit_mean: float = 0.0  # noise levels: sigmoid(N(mean, std))
    logit_std: float = 1.0
    context_noise: float = 0.1  # context frames get a level drawn uniformly in [0, this]
    mask_probs: dict[str, float] = field(default_factory=lambda: {"none": 0.1, "first": 0.5, "last": 0.1, "ends": 0.1, "random": 0.2})
    causal_probability: float = 0.5  # batches trained block-causal (the rest bidirectional)
    text_drop: float = 0.1
    action_drop: float = 0.1
    # How often a caption loses its events sentence: the simulator's prompt describes
    # the scene before anything has happened, so the model must work from both.
    events_drop: float = 0.5

    def __post_init__(self) -> None:
        bad = [k for k in self.mask_probs if k not in MASK_KINDS]
        if bad:
            raise ValueError(f"flow.mask_probs: unknown kinds {bad}; valid: {MASK_KINDS}")
        if abs(sum(self.mask_probs.values()) - 1.0) > 1e-6:
            raise ValueError(f"flow.mask_probs must sum to 1, got {self.mask_probs}")


def noise_levels(batch: int, frames: int, cfg: FlowConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, T) logit-normal noise levels, one per frame."""
    z = torch.randn(batch, frames, generator=gen) * cfg.logit_std + cfg.logit_mean
    return torch.sigmoid(z)


def context_masks(batch: int, frames: int, cfg: FlowConfig, gen: torch.Generator, *, causal: bool) -> torch.Tensor:
    """(B, T) bool: which frames are given as context.

    Block-causal batches use first-k masks only (what the simulator sees: a frame can
    only be conditioned on earlier ones); bidirectional batches draw a kind per clip.
    """
    out = torch.zeros(batch, frames, dtype=torch.bool)
    kinds = list(cfg.mask_probs)
    probs = torch.tensor([cfg.mask_probs[k] for k in kinds])
    for i in range(batch):
        kind = "first" if causal else kinds[int(torch.multinomial(probs, 1, generator=gen))]
        if frames < 2 or kind == "none":
            continue
        k = int(torch.randint(1, frames, (1,), generator=gen))  # 1 .. T-1 context frames
        if kind == "first":
            out[i, :k] = True
        elif kind == "last":
            out[i, frames - k :] = True
        elif kind == "ends":
            a = int(torch.randint(1, k + 1, (1,), generator=gen)) if k > 1 else 1
            out[i, :a] = True
            out[i, frames - max(1, k - a) :] = True
            if out[i].all():
                out[i, frames // 2] = False
        else:  # random subset, never all
            out[i] = torch.rand(frames, generator=gen) < k / frames
            if out[i].all():
                out[i, int(torch.randint(frames, (1,), generator=gen))] = False
    return out


def add_noise(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps, with t (B, T) broadcast over (C, H, W)."""
    tt = t[:, :, None, None, None].to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def training_inputs(
    x0: torch.Tensor, cfg: FlowConfig, gen: torch.Generator
) -> dict[str, torch.Tensor | bool]:
    """Everything random about one training step, for clean latents x0 (B, T, C, H, W):
    noisy input, levels, velocity target, the context mask, the attention mode and
    the dropouts."""
    b, frames = x0.shape[:2]
    causal = bool(torch.rand(1, generator=gen) < cfg.causal_probability)
    ctx = context_masks(b, frames, cfg, gen, causal=causal)
    t = noise_levels(b, frames, cfg, gen)
    t = torch.where(ctx, torch.rand(b, frames, generator=gen) * cfg.context_noise, t)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(x0)
    t = t.to(x0.device)
    return {
        "x_t": add_noise(x0, t, noise),
        "t": t,
        "target": noise - x0,
        "context": ctx.to(x0.device),
        "causal": causal,
        "text_drop": (torch.rand(b, generator=gen) < cfg.text_drop).to(x0.device),
        "action_drop": (torch.rand(b, generator=gen) < cfg.action_drop).to(x0.device),
    }


def flow_loss(v_pred: torch.Tensor, target: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Mean squared velocity error over the frames that are not context."""
    err = (v_pred.float() - target.float()).square().mean(dim=(2, 3, 4))  # (B, T)
    w = (~context).float()
    return (err * w).sum() / w.sum().clamp_min(1.0)
