"""Rectified flow with per-frame noise levels (the training objective).

A latent frame ``x0`` at noise level ``t`` in [0, 1] is ``x_t = (1 - t) x0 + t eps``;
the model predicts the velocity ``v = eps - x0`` (SD3, Open-Sora 1.2), or, with
``prediction: sample``, the clean frame ``x0`` itself, from which the velocity is
``(x_t - x0) / t`` (:func:`velocity_from`). Predicting the sample is what lets a small
network start from a copy: its zero output at initialisation is the anchor frame
unchanged, where a zero velocity leaves the starting noise in the frame, and the
identity it would have to learn to remove that noise cannot pass through a token
narrower than its patch. Every frame of
a clip gets its own level, drawn logit-normal (most mass mid-way, where learning is
hardest). Frames chosen as *context* (first k, last k, both ends, a random subset, or
none) sit near ``t = 0`` with a little noise (against drift when the model's own
outputs become its context), and the loss counts only the other frames: one model then
does text-to-video (no context), image-to-video and forward extension (first frames),
backward extension (last frames), connecting clips (both ends) and the simulator
(block-causal, first frames). Captions and actions are dropped at random, separately,
for classifier-free guidance.

**The simulator's own task** (:func:`simulator_inputs`, a share ``simulator_share`` of
the steps): every frame of a clip is predicted from the frames before it, seen as the
simulator's KV cache holds them (clean, at a small context noise level), in one
teacher-forced pass; with an anchored DiT, as its difference from the frame before.
Its history can be the model's own predictions (``unroll``), against the gap between
teacher forcing and rolling out. The loss can weigh the pixels of objects more
(``object_weight``; the segmentation is in every episode).

Every random draw comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange

MASK_KINDS = ("none", "first", "last", "ends", "random")
PREDICTIONS = ("velocity", "sample")


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
    # The simulator's own task (simulator_inputs). Defaults reproduce models trained
    # before it existed; conf/stage/dit.yaml holds the recipe of docs/RECIPE.md.
    prediction: str = "velocity"  # what the network outputs: velocity (eps - x0) | sample (x0; a difference when anchored)
    simulator_share: float = 0.0  # steps spent on it (the rest: the Sora modes above)
    object_weight: float = 1.0  # loss weight of latent pixels an object covers (in the frame or the one before)
    # With model.warp: weight of a loss on the DiT's flow where objects are and were, against each object's
    # motion from the segmentation (its centroid's shift since the frame before, in latent pixels)
    motion_weight: float = 0.0
    # ... plus the same loss, at zero motion, where the still background shows in this frame and
    # the one before (its own mean: as strong as the objects' part however much background there is)
    motion_background: bool = True
    unroll: int = 0  # passes in which the history becomes the model's own predictions (no gradient)
    unroll_steps: int | None = None  # Euler steps each of those predictions takes (null: sampler_steps, the rollout's own)
    unroll_fraction: float = 0.5  # clips of a simulator step whose history is the model's own (with unroll > 0)
    sampler_steps: int = 4  # the denoising steps a simulator step takes with this model unless told otherwise

    def __post_init__(self) -> None:
        bad = [k for k in self.mask_probs if k not in MASK_KINDS]
        if bad:
            raise ValueError(f"flow.mask_probs: unknown kinds {bad}; valid: {MASK_KINDS}")
        if abs(sum(self.mask_probs.values()) - 1.0) > 1e-6:
            raise ValueError(f"flow.mask_probs must sum to 1, got {self.mask_probs}")
        for key in ("simulator_share", "unroll_fraction", "causal_probability", "text_drop", "action_drop", "events_drop", "context_noise"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ValueError(f"flow.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.object_weight < 1.0:
            raise ValueError(f"flow.object_weight must be >= 1 (1: no weighting), got {self.object_weight}")
        if self.motion_weight < 0.0:
            raise ValueError(f"flow.motion_weight must be >= 0 (0: none), got {self.motion_weight}")
        if self.unroll < 0:
            raise ValueError(f"flow.unroll must be >= 0, got {self.unroll}")
        if self.unroll_steps is not None and self.unroll_steps < 1:
            raise ValueError(f"flow.unroll_steps must be >= 1 (or null: flow.sampler_steps), got {self.unroll_steps}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"flow.prediction must be one of {PREDICTIONS}, got {self.prediction!r}")


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
        "target_sample": x0,
        "context": ctx.to(x0.device),
        "causal": causal,
        "text_drop": (torch.rand(b, generator=gen) < cfg.text_drop).to(x0.device),
        "action_drop": (torch.rand(b, generator=gen) < cfg.action_drop).to(x0.device),
    }


def simulator_inputs(
    x0: torch.Tensor,
    cfg: FlowConfig,
    gen: torch.Generator,
    *,
    anchor: bool,
    history: torch.Tensor | None = None,
    level: float | None = None,
    anchor_frames: int = 1,
) -> dict[str, torch.Tensor | bool]:
    """One teacher-forced step of the simulator's task for clean clips x0 (B, T, C, H, W).

    The sequence holds the history, frames 0 .. T-2 at a context noise level drawn per
    frame in [0, ``context_noise``] (what the simulator's KV cache holds), then the
    targets, frames 1 .. T-1 at logit-normal levels (or ``level``). ``frame_mask``
    lets history frame i see history frames up to i, and target frame k the history
    before it and itself: the attention of a KV-cached step, for every k at once.
    With ``anchor``, target k is the difference from history frame k - 1 as it was
    before the context noise (the simulator adds it to the frame it generated, the
    difference is taken from the frame itself); its anchor embedding sees the noisy
    history frames k - 1 .. k - ``anchor_frames`` stacked (the oldest repeated where
    the clip starts).

    Args:
      history: (B, T-1, C, H, W) frames to use as history instead of ``x0[:, :-1]``
        (the model's own predictions, for unrolled training).
    Returns the DiT's inputs (``x_t``, ``t``, ``anchor``, ``anchored``, ``anchor_t``,
    ``anchor_base``, ``frame_index``, ``frame_mask``, ``causal``, the dropouts), the velocity
    ``target``, ``context`` (the history: out of the loss) and ``base`` (what a
    predicted difference is added to).
    """
    b, frames = x0.shape[:2]
    if frames < 2:
        raise ValueError(f"the simulator's task needs clips of at least 2 frames, got {frames}")
    n = frames - 1
    past = x0[:, :-1] if history is None else history
    tau = (torch.rand(b, n, generator=gen) * cfg.context_noise).to(x0.device)
    hist = add_noise(past, tau, torch.randn(past.shape, generator=gen).to(past))
    # The difference is taken from the clean previous frame (what the simulator just
    # generated), while the model sees the noisy one: noise the model would have to
    # reproduce pixel by pixel is never part of what it predicts.
    base = past if anchor else torch.zeros_like(hist)
    y0 = x0[:, 1:] - base  # (B, n, C, H, W) what the targets denoise to
    t = (noise_levels(b, n, cfg, gen) if level is None else torch.full((b, n), float(level))).to(x0.device)
    eps = torch.randn(y0.shape, generator=gen).to(y0)
    time = torch.arange(frames, device=x0.device)
    frame_index = torch.cat([time[:-1], time[1:]])  # (2n,) time of each frame of the sequence
    is_target = torch.arange(2 * n, device=x0.device) >= n
    # history i sees history j <= i; target k sees history j < k, and itself
    frame_mask = (frame_index[None, :] <= frame_index[:, None]) & ~is_target[None, :]
    frame_mask = frame_mask & ~(is_target[:, None] & (frame_index[None, :] == frame_index[:, None]))
    frame_mask = frame_mask | torch.eye(2 * n, dtype=torch.bool, device=x0.device)
    return {
        "x_t": torch.cat([hist, add_noise(y0, t, eps)], 1),
        "t": torch.cat([tau, t], 1),
        "target": torch.cat([torch.zeros_like(hist), eps - y0], 1),
        "target_sample": torch.cat([torch.zeros_like(hist), y0], 1),
        "context": (~is_target)[None].expand(b, -1),
        "anchor": torch.cat([torch.zeros_like(stack_history(hist, anchor_frames)), stack_history(hist, anchor_frames)], 1) if anchor else None,
        "anchored": is_target[None].expand(b, -1) if anchor else None,
        "anchor_t": torch.cat([torch.zeros_like(tau), tau], 1) if anchor else None,  # target k's anchor is history k - 1, at its level
        "anchor_base": torch.cat([torch.zeros_like(base), base], 1) if anchor else None,  # what each target's difference is from (clean)
        "base": base,
        "frame_index": frame_index,
        "frame_mask": frame_mask,
        "causal": True,
        "text_drop": (torch.rand(b, generator=gen) < cfg.text_drop).to(x0.device),
        "action_drop": (torch.rand(b, generator=gen) < cfg.action_drop).to(x0.device),
    }


def stack_history(frames: torch.Tensor, m: int) -> torch.Tensor:
    """(B, n, C, H, W) -> (B, n, m*C, H, W): at each step the frame and the m - 1 before
    it, newest first (the first frame repeated before the clip's start)."""
    if m == 1:
        return frames
    shifted = [frames] + [torch.cat([frames[:, :1].expand(-1, j, -1, -1, -1), frames[:, :-j]], 1) if j < frames.shape[1]
                          else frames[:, :1].expand(-1, frames.shape[1], -1, -1, -1) for j in range(1, m)]
    return torch.cat(shifted, 2)


def velocity_from(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """The velocity from the network's output ``out`` (B, T, C, H, W) at ``x_t`` and
    levels ``t`` (B, T): the output itself, or ``(x_t - x0) / t`` for a predicted sample
    (t held above 1e-3: the level of clean context frames, whose velocity nobody uses)."""
    if prediction == "velocity":
        return out
    tt = t.to(out.dtype)[:, :, None, None, None].clamp_min(1e-3)
    return (x_t.to(out.dtype) - out) / tt


def object_weights(objects: torch.Tensor, latent_hw: tuple[int, int], weight: float) -> torch.Tensor:
    """Per latent pixel loss weights (B, T, 1, h, w) from object masks (B, T, H, W):
    ``weight`` where an object is in the frame or was in the frame before (a moving
    object changes both places), else 1."""
    m = objects.float()
    m = torch.maximum(m, torch.cat([m[:, :1], m[:, :-1]], 1))  # or in the previous frame
    b = m.shape[0]
    m = F.adaptive_max_pool2d(rearrange(m, "b t h w -> (b t) 1 h w"), latent_hw)  # (B*T, 1, h, w)
    m = rearrange(m, "(b t) 1 h w -> b t 1 h w", b=b)
    return 1.0 + (weight - 1.0) * m


def object_motion(segmentation: torch.Tensor, latent_hw: tuple[int, int], max_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every object's motion as a flow field, from instance ids (B, T, H, W) (1 .. ``max_id``
    objects, 0 and larger ids not): (flow (B, T, 2, h, w) in latent pixels, (dx, dy); where
    (B, T, 1, h, w) bool). For each object o that shows in frames t - 1 and t, o's centroid
    in t minus its centroid in t - 1, over the latent pixels o covers in t and those it
    covered in t - 1 that no object covers in t (frame 0: nowhere).

    That second part is what a backward warp (:func:`worldsim.models.dit.warp`: the value
    at p is the last frame's at p - flow(p)) needs to move an object rather than smear it:
    a pixel q the object has left samples q - v, which lies outside the object's old
    footprint (q is not in the old footprint moved by v), so the object leaves no trail.
    With the flow only where the object is now, q keeps a copy of it: the true motion
    warped so 16 times over loses 62% of bouncing_balls' objects, over both footprints 2%
    (bicubic; docs/RECIPE.md, round 15)."""
    b, t, hh, ww = segmentation.shape
    h, w = latent_hw
    ids = torch.arange(1, max_id + 1, device=segmentation.device)
    onehot = (segmentation[:, :, None] == ids[:, None, None]).float()  # (B, T, K, H, W)
    ys = (torch.arange(hh, device=segmentation.device, dtype=torch.float32) + 0.5) * (h / hh)  # latent pixel coordinates
    xs = (torch.arange(ww, device=segmentation.device, dtype=torch.float32) + 0.5) * (w / ww)
    count = onehot.sum((-2, -1))  # (B, T, K)
    cx = (onehot * xs).sum((-2, -1)) / count.clamp_min(1)
    cy = (onehot * ys[:, None]).sum((-2, -1)) / count.clamp_min(1)
    shown = count >= 1
    ok = shown[:, 1:] & shown[:, :-1]  # (B, T-1, K) in both frames
    d = torch.stack([cx[:, 1:] - cx[:, :-1], cy[:, 1:] - cy[:, :-1]], -1) * ok[..., None]  # (B, T-1, K, 2)
    d = torch.cat([torch.zeros_like(d[:, :1]), d], 1)  # (B, T, K, 2)
    ok = torch.cat([torch.zeros_like(ok[:, :1]), ok], 1)  # (B, T, K)
    small = F.adaptive_avg_pool2d(rearrange(onehot, "b t k hh ww -> (b t) k hh ww"), (h, w))  # share of each latent pixel an object covers
    small = rearrange(small, "(b t) k h w -> b t k h w", b=b) > 0.5  # (B, T, K, h, w): at most one object a pixel
    before = torch.cat([torch.zeros_like(small[:, :1]), small[:, :-1]], 1)  # what each object covered in the frame before
    left = before & ~small.any(2, keepdim=True)  # ... and no object covers now
    cover = (small | left) & ok[..., None, None]
    flow = torch.einsum("btkhw,btkc->btchw", cover.float(), d)
    return flow, cover.any(2, keepdim=True)


def still_background(background: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Latent pixels (B, T, 1, h, w) bool wholly ``background`` (B, T, H, W) bool in frame t and
    in t - 1 (frame 0: none): where a flow must be zero, so that the flow around an object
    cannot pull its colour outwards (balls that grow a little each step of a rollout;
    docs/RECIPE.md, round 15)."""
    b, t = background.shape[:2]
    h, w = latent_hw
    bg = F.adaptive_avg_pool2d(background.float().flatten(0, 1)[:, None], (h, w)).view(b, t, 1, h, w) > 0.999
    return bg & torch.cat([torch.zeros_like(bg[:, :1]), bg[:, :-1]], 1)


def motion_loss(flow: torch.Tensor, truth: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean squared error (latent pixels squared) of a flow (B, T, 2, h, w) against ``truth`` where ``where``."""
    m = where.float()
    return ((flow.float() - truth).square() * m).sum() / (2 * m.sum()).clamp_min(1.0)


def flow_loss(v_pred: torch.Tensor, target: torch.Tensor, context: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error over the frames that are not context; with
    ``weight`` (B, T, 1, H, W), a weighted mean within each frame."""
    sq = (v_pred.float() - target.float()).square()  # (B, T, C, H, W)
    if weight is None:
        err = sq.mean(dim=(2, 3, 4))  # (B, T)
    else:
        w = weight.float().expand_as(sq)
        err = (sq * w).mean(dim=(2, 3, 4)) / w.mean(dim=(2, 3, 4))  # (B, T)
    keep = (~context).float()
    return (err * keep).sum() / keep.sum().clamp_min(1.0)
