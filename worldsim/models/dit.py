"""The spacetime diffusion transformer (DiT) over video latents.

Latent frames are cut into spacetime patches (``pt x ph x pw``) with einops; every
token carries 3-D rotary position (time, row, column), which is relative, so the
model runs at sizes and lengths it was not trained on. Each block is self-attention
over all tokens of the clip, cross-attention to the caption's tokens, and an MLP;
adaLN-Zero modulation (shift, scale, gate) is computed **per frame** from that frame's
noise level, that frame's action, the pooled caption and the attention mode, so a
clip can hold clean context frames next to noisy ones (Diffusion Forcing).

Attention is block-causal (a frame sees itself and earlier frames) or bidirectional,
chosen per batch; the model is told which. In block-causal mode the keys and values
of past frames never depend on later ones, so the learned simulator keeps them in a
:class:`KVCache` and computes only the new frame's tokens at each denoising step.
Training the simulator's own task passes an explicit frame-level attention mask and
time index per frame instead (:func:`worldsim.diffusion.flow.simulator_inputs`: clean
history frames and noisy next frames in one sequence).

Anchoring (``anchor: true``): a frame may be *anchored* to another (the simulator's
previous frame). Its input and output are then the difference from the anchor, and
the anchor itself enters through a second, zero-initialised patch embedding, so the
network sees both; at initialisation an anchored frame is predicted as a copy of its
anchor, and objects cannot vanish before anything is learned. With ``anchor_frames:
m`` the last m frames enter that embedding stacked as channels (DIAMOND stacks its
last frames the same way): every token then sees, at its own place, how the frames
before it changed, so motion is local arithmetic rather than something attention must
first learn to find. Frames that are not anchored (the Sora modes, the cached history)
are plain latents.

Warping (``warp: true``, with anchoring): the DiT also outputs a flow, two channels a
latent pixel, and an anchored frame's difference is its base frame (the clean last
frame, ``anchor_base``) resampled along that flow (:func:`warp`, bicubic unless
``warp_mode`` says bilinear) minus the base, plus the residual it outputs; a zero output
is still a copy. A ball that moves by v is then a flow equal to v over where it is and
where it was, smooth, where as a plain difference it is two sharp crescents. Trained by
the diffusion loss alone the flow hardly moves (the loss sees it only through the
image's edges); ``flow.motion_weight`` adds a loss on it where objects are and were,
against their motion read from the segmentation (docs/RECIPE.md, rounds 14-15).

Shapes: B batch, T latent frames, C latent channels, H x W latent size, N = (H/ph)(W/pw)
tokens per frame, D model width, L text tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class DiTConfig:
    """Size and shape of a DiT (conf/model/*.yaml: dit_xs, dit_s, dit_b)."""

    dim: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])  # (pt, ph, pw) in latent frames and pixels
    latent_channels: int = 16  # set from the autoencoder
    action_dim: int = 2
    text_dim: int = 128  # width of the text encoder's tokens
    rope_theta: float = 10000.0
    anchor: bool = False  # frames may be anchored to a previous frame (see the module docstring)
    anchor_frames: int = 1  # frames before an anchored one that its anchor embedding sees, newest first
    # plain: a frame at noise level t enters as it is | signal: scaled by (1 - t), so a frame
    # of pure noise enters as zeros and at t = 1 the model predicts from its context alone
    noise_input: str = "plain"
    # Channels of a small convolutional head refining the output at the latent pixel
    # level (0: none). It sees the DiT's output, the frame's input and its anchor frames,
    # so the local, translation-shaped part of motion need not pass through patch tokens.
    pixel_head: int = 0
    # Anchored frames as their anchor *moved*: the DiT also outputs a flow (2 channels a latent
    # pixel, in latent pixels: how far the content at each place came), and an anchored frame is
    # its anchor resampled along that flow, plus the residual it outputs. A ball moving by v is
    # then a flow that is v over its neighbourhood, smooth and low-rank where the residual of a
    # moved ball is two sharp crescents; a zero output is still a copy (see the module docstring).
    warp: bool = False
    # how model.warp resamples: bicubic (blurs least: the true motion applied by it 16 times
    # over loses 2% of the balls, bilinear 20%; docs/RECIPE.md, round 15) | bilinear
    warp_mode: str = "bicubic"
    # With model.warp: each token outputs its flow over a window twice its patch (centred on
    # it), blended with its neighbours' by a tent window that sums to one, so the flow is
    # continuous across token borders (per-patch flows tear a ball that straddles two tokens
    # when they disagree; docs/RECIPE.md, round 16). Needs patch [1, ph, pw] with ph, pw even.
    flow_overlap: bool = False
    # nn.GELU's approximate of the MLPs: none (the exact, erf GELU: 4-8x faster than tanh in
    # bf16 on CPUs, forward and backward) | tanh (checkpoints that do not record it were trained with it)
    gelu_approximate: str = "tanh"

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"model.dim {self.dim} must be divisible by model.heads {self.heads}")
        if (self.dim // self.heads) % 8:
            raise ValueError(f"the head width dim / heads = {self.dim // self.heads} must be a multiple of 8 (3-D rotary positions)")
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"model.patch must be [pt, ph, pw] >= 1, got {self.patch}")
        if self.anchor_frames < 1:
            raise ValueError(f"model.anchor_frames must be at least 1, got {self.anchor_frames}")
        if self.noise_input not in ("plain", "signal"):
            raise ValueError(f"model.noise_input must be plain or signal, got {self.noise_input!r}")
        if self.warp and (not self.anchor or self.pixel_head):
            raise ValueError("model.warp moves an anchored frame's anchor: it needs model.anchor=true and model.pixel_head=0")
        if self.warp_mode not in ("bicubic", "bilinear"):
            raise ValueError(f"model.warp_mode must be bicubic or bilinear, got {self.warp_mode!r}")
        if self.flow_overlap and (not self.warp or self.patch[0] != 1 or self.patch[1] % 2 or self.patch[2] % 2):
            raise ValueError(f"model.flow_overlap blends the flow of model.warp across tokens: it needs model.warp=true and "
                             f"a patch [1, ph, pw] with ph and pw even, got warp={self.warp}, patch={self.patch}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"model.gelu_approximate must be none (exact GELU) or tanh, got {self.gelu_approximate!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- rotary positions ------------------------------------------------------------------------------
def rope_split(head_dim: int) -> tuple[int, int, int]:
    """How a head's channels divide among (time, row, column); each part even."""
    dt = (head_dim // 4) // 2 * 2
    rest = head_dim - dt
    dh = rest // 2 // 2 * 2
    return dt, dh, rest - dh


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (L, head_dim) for token positions (L, 3) = (t, row, column)."""
    parts = []
    for axis, d in enumerate(rope_split(head_dim)):
        freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) / d)  # (d/2,)
        parts.append(positions[:, axis, None].float() * freqs)  # (L, d/2)
    angles = torch.cat(parts, -1)  # (L, head_dim/2)
    angles = torch.cat([angles, angles], -1)  # (L, head_dim): rotate_half pairs i with i + head_dim/2
    return angles.cos(), angles.sin()


def rms_norm(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` with its weight in x's dtype: under bf16 autocast the input is bf16 and
    the weight fp32, which nothing casts for rms_norm (PyTorch warns and takes a slow path)."""
    return F.rms_norm(x, norm.normalized_shape, norm.weight.to(x.dtype), norm.eps)


class Rope:
    """The rotary tables of a call's tokens, made once a call for every block: cos and a
    *signed* sin (L, head_dim) in fp32, the sin's first half negated, so that
    ``rotate_half(x) * sin`` is ``x.roll(head_dim / 2) * signed`` exactly (one roll for
    a chunk, a negation and a concatenation), and each cast to a dtype at the first
    block that asks for it (the queries' dtype: bf16 under autocast on a CPU, fp32 under
    CUDA autocast, whose rms_norm runs in fp32, so the angles are never rounded there)."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor):
        half = sin.shape[-1] // 2
        self.cos, self.signed_sin = cos, torch.cat([-sin[:, :half], sin[:, half:]], -1)
        self._tables: dict[tuple[torch.dtype, int | None], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, dtype: torch.dtype, last: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and the signed sin in ``dtype``, of the ``last`` tokens only if given."""
        key = (dtype, last)
        if key not in self._tables:
            cos, sin = self.cos.to(dtype), self.signed_sin.to(dtype)
            self._tables[key] = (cos, sin) if last is None else (cos[-last:], sin[-last:])
        return self._tables[key]


def apply_rope(x: torch.Tensor, rope: Rope, last: int | None = None) -> torch.Tensor:
    """x (B, heads, L, hd) rotated by per-token angles (of the ``last`` L tokens of the call)."""
    cos, sin = rope.tables(x.dtype, last)
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin


# -- caching ------------------------------------------------------------------------------------------
def warp(frames: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic", *, opaque: bool = False) -> torch.Tensor:
    """``frames`` (B, T, C, H, W) resampled along ``flow`` (B, T, 2, H, W), in fp32: the
    value at pixel p is the frame's at p - flow(p) (``mode`` bicubic or bilinear, edges
    repeated), so content moves by the flow; channel 0 is the column (x) displacement, 1
    the row (y), in pixels. Bicubic blurs less than bilinear at fractional displacements,
    which matters once a frame is resampled every step of a rollout. ``opaque``: resampled
    through :func:`_grid_sample` (see :func:`warp_frames`)."""
    b, t, c, h, w = frames.shape
    f = rearrange(flow.float(), "b t k h w -> (b t) h w k")
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device), torch.arange(w, device=flow.device), indexing="ij")
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1)  # (H, W, 2) pixel centres, align_corners=False
    grid = grid - f * torch.tensor([2 / w, 2 / h], device=flow.device)
    sample = _grid_sample if opaque else F.grid_sample
    out = sample(rearrange(frames.float(), "b t c h w -> (b t) c h w"), grid, mode=mode, padding_mode="border", align_corners=False)
    return rearrange(out, "(b t) c h w -> b t c h w", b=b)


@torch.library.custom_op("worldsim::grid_sample", mutates_args=())
def _grid_sample(x: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str, align_corners: bool) -> torch.Tensor:
    """``F.grid_sample`` as one operator that a compiled graph calls as it is: PyTorch's
    own CPU kernel rather than Inductor's lowering of it (5-6x slower on a CPU: 64
    worlds, 22 against 4 ms), with no break of the graph around it. No gradient."""
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


@_grid_sample.register_fake
def _(x: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str, align_corners: bool) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))


_warp_eager = torch.compiler.disable(warp)  # with autograd on a CPU: the warp run outside a compiled graph


def warp_frames(frames: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
    """:func:`warp`; on a CPU, in a ``torch.compile`` graph, its resampling is PyTorch's
    own kernel, not Inductor's (5-6x slower there): without autograd (the simulator's
    steps) as one opaque operator inside the graph (:func:`_grid_sample`); with autograd
    (training) by running the warp outside the graph, which breaks it in two. On a GPU
    the warp is compiled with the rest."""
    if frames.device.type != "cpu" or not torch.compiler.is_compiling():
        return warp(frames, flow, mode)
    if not torch.is_grad_enabled():
        return warp(frames, flow, mode, opaque=True)
    return _warp_eager(frames, flow, mode)


class KVCache:
    """Keys and values of past frames, per block, for block-causal stepping: a ring of
    ``window`` frame slots in buffers allocated once, written in place.

    Layout per block: ``(B, heads, (window + 1) * N, hd)``, slot 0 the frame being
    computed now, slots 1 .. window the stored frames (in ring order: attention does not
    care about the order of its keys, and each key carries its own rotary position).
    A frame is stored by writing its keys and values straight into its ring slot, over
    the oldest frame once the ring is full: a stored frame therefore sees the
    ``window - 1`` frames before it and itself (as a history frame of a training clip of
    ``window + 1`` frames does), and a computed frame the ``window`` frames before it and
    itself. One call may store a frame and compute the next one (the simulator folds the
    storing of a finished frame into the first denoising call of the next).

    Every call attends to the whole buffer under a mask of the slots its frames may see,
    and the ring's position and fill are tensors: a call's shapes and Python values are
    the same at every frame, so ``torch.compile`` traces one graph for a whole rollout
    (no concatenation, no trimming copies, no recompiling as the ring fills or turns).
    """

    CONSTANTS = 16  # values constant() keeps at most (a frame's live ones: about 2 rotary tables and 7 level sets)

    def __init__(self, depth: int, window: int | None = None):
        self.depth = depth
        self.window = 8 if window is None else int(window)
        if self.window < 1:
            raise ValueError(f"a KV cache needs a window of at least one frame, got {window}")
        self.k: list[torch.Tensor | None] = [None] * depth
        self.v: list[torch.Tensor | None] = [None] * depth
        self.tokens = 0  # tokens per frame
        self.count: torch.Tensor | None = None  # () long: stored frames in the ring (at most window)
        self.next: torch.Tensor | None = None  # () long: the ring slot (0 .. window - 1) the next stored frame goes to
        self._call: tuple[torch.Tensor, torch.Tensor | None] | None = None  # this call's mask and store index (from block 0)
        self._constants: dict[tuple[Any, ...], Any] = {}  # constant(), least recently used first

    def constant(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """``make()`` for ``key``, made once while it is in use: a call's values that depend
        only on what the key holds (the rotary tables of a frame index, the time embedding
        of noise levels), which a rollout's calls repeat: the sampler steps of a frame share
        its index, and every frame the same levels. ``DiT.forward`` asks only on a CPU,
        without autograd and outside a compiled graph (a key reads tensor values, which on
        an accelerator would wait for it; a compiled graph makes them within itself). At
        most ``CONSTANTS`` values are kept, the least recently used dropped first (a past
        frame's tables, never asked for again)."""
        value = self._constants.pop(key, None)
        if value is None:
            if len(self._constants) >= self.CONSTANTS:
                del self._constants[next(iter(self._constants))]
            value = make()
        self._constants[key] = value  # the most recently used, last
        return value

    def allocate(self, batch: int, heads: int, tokens: int, head_dim: int, dtype: torch.dtype, device: torch.device | str) -> "KVCache":
        """Allocate the buffers now (``attend`` does it at the first call otherwise): a
        compiled model then never traces the allocation."""
        for layer in range(self.depth):
            self.k[layer] = torch.zeros(batch, heads, (self.window + 1) * tokens, head_dim, dtype=dtype, device=device)
            self.v[layer] = torch.zeros(batch, heads, (self.window + 1) * tokens, head_dim, dtype=dtype, device=device)
        self.tokens = tokens
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.next = torch.zeros((), dtype=torch.long, device=device)
        return self

    def __len__(self) -> int:
        return self.num_frames() * self.tokens

    def num_frames(self) -> int:
        return 0 if self.count is None else int(self.count)

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, *, store: bool, compute: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Write the keys and values (B, h, F*N, hd) of F = store + compute frames (the
        frame to store first, then the frame to compute) and return the whole buffers
        (B, h, (window + 1) * N, hd) with the additive mask (1, 1, F*N, (window + 1) * N)
        of the keys each frame's queries see (0 seen, -inf not)."""
        b, h, length, hd = k.shape
        frames = int(store) + int(compute)
        if frames == 0 or length % frames:
            raise ValueError(f"a KV cache call stores a frame, computes one, or both; got {length} tokens for store={store}, compute={compute}")
        n = length // frames
        kb = self.k[layer]
        if kb is None or kb.shape[0] != b or kb.dtype != k.dtype:
            self.allocate(b, h, n, hd, k.dtype, k.device)
        elif n != self.tokens:
            raise ValueError(f"a KV cache holds frames of {self.tokens} tokens, got {n}")
        kb, vb = self.k[layer], self.v[layer]
        assert kb is not None and vb is not None and self.count is not None and self.next is not None
        if layer == 0:  # the mask and store index, once a call for every block
            slot = torch.arange(self.window + 1, device=k.device)  # 0: the frame computed now
            held = (self.count + int(store)).clamp(max=self.window)  # the ring fills slots 1.. in order
            ring = (slot >= 1) & (slot <= held)  # the stored frames, the one stored now included
            rows = ([ring] if store else []) + ([ring | (slot == 0)] if compute else [])
            see = torch.stack(rows).repeat_interleave(n, 0).repeat_interleave(n, 1)[None, None]  # (1, 1, F*N, (window+1)*N)
            # additive, in the keys' dtype: made once here, not converted by every block's attention
            mask = torch.zeros(see.shape, dtype=k.dtype, device=k.device).masked_fill(~see, float("-inf"))
            index = (1 + self.next) * n + torch.arange(n, device=k.device) if store else None  # (N,) the slot's tokens
            self._call = (mask, index)
        assert self._call is not None
        mask, index = self._call
        if index is not None:
            kb.index_copy_(2, index, k[:, :, :n])
            vb.index_copy_(2, index, v[:, :, :n])
        if compute:
            kb[:, :, :n].copy_(k[:, :, length - n :])
            vb[:, :, :n].copy_(v[:, :, length - n :])
        return kb, vb, mask

    def advance(self) -> None:
        """Count the frame every block has just stored (call once per storing call)."""
        assert self.count is not None and self.next is not None
        self.next.copy_((self.next + 1) % self.window)
        self.count.copy_((self.count + 1).clamp(max=self.window))


# -- layers ------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of noise levels t in [0, 1] (scaled by 1000): (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
        store: bool,
        compute: bool,
        queries: int | None = None,
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or with ``queries`` (a KV cache call) the last that many
        tokens' outputs (every token's keys and values still enter the cache)."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)  # each (B, h, L, hd)
        if queries:  # the last tokens' queries alone
            q = q[:, :, -queries:]
        q, k = apply_rope(rms_norm(self.q_norm, q), rope, queries), apply_rope(rms_norm(self.k_norm, k), rope)
        if cache is None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, L, hd)
        else:  # every frame's queries against the whole ring, masked to the frames it sees
            kb, vb, kv_mask = cache.attend(layer, k, v, store=store, compute=compute)
            o = F.scaled_dot_product_attention(q, kb, vb, attn_mask=kv_mask[:, :, -queries:] if queries else kv_mask)
        return self.out(rearrange(o, "b h l d -> b l (h d)"))


@dataclass
class TextState:
    """A caption made ready for the DiT: projected tokens (B, S, D), their mask, the
    pooled vector (B, D), and each block's cross-attention keys and values, computed
    once (the simulator reuses them for every frame of a rollout)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]

    def repeat(self, k: int) -> "TextState":
        """The same captions k times over the batch (for guidance batches)."""
        cat = lambda x: torch.cat([x] * k)  # noqa: E731
        return TextState(cat(self.tokens), cat(self.mask), cat(self.pooled), [(cat(a), cat(b)) for a, b in self.kv])


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def keys_values(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = rearrange(self.kv(text), "b s (two h d) -> two b h s d", two=2, h=self.heads)  # (B, h, S, hd)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], text_mask: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)  # (B, h, L, hd)
        o = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=text_mask[:, None, None, :])
        return self.out(rearrange(o, "b h l d -> b l (h d)"))


class Block(nn.Module):
    """Self-attention, cross-attention to text, MLP; adaLN-Zero per frame."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, config.heads)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, config.heads, d)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate=config.gelu_approximate), nn.Linear(hidden, d))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(
        self,
        x: torch.Tensor,  # (B, T, N, D)
        c: torch.Tensor,  # (B, T, D)
        text_kv: tuple[torch.Tensor, torch.Tensor],  # (B, h, S, hd) each
        text_mask: torch.Tensor,  # (B, S)
        rope: Rope,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
        store: bool,
        compute: bool,
        keep: int | None = None,  # only the last `keep` frames' outputs are wanted (their keys and values: all frames')
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, :, None].chunk(6, dim=-1)  # each (B, T, 1, D)
        h = self.norm1(x) * (1 + scale1) + shift1  # (B, T, N, D)
        if keep is not None:  # from here on, the kept frames alone: (B, keep, ...)
            x, gate1, shift2, scale2, gate2 = (y[:, -keep:] for y in (x, gate1, shift2, scale2, gate2))
        t, queries = x.shape[1], None if keep is None else keep * x.shape[2]
        h = self.attn(rearrange(h, "b t n d -> b (t n) d"), rope, mask, cache, layer, store, compute, queries)  # (B, T*N, D)
        x = x + gate1 * rearrange(h, "b (t n) d -> b t n d", t=t)
        h = self.cross(rearrange(self.norm2(x), "b t n d -> b (t n) d"), text_kv, text_mask)  # (B, T*N, D)
        x = x + rearrange(h, "b (t n) d -> b t n d", t=t)
        h = self.norm3(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class DiT(nn.Module):
    """See the module docstring. ``forward`` returns the predicted velocity."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        d, (pt, ph, pw) = config.dim, config.patch
        self.patch_dim = pt * ph * pw * config.latent_channels
        self.embed = nn.Linear(self.patch_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.action_mlp = nn.Sequential(nn.Linear(config.action_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.null_action = nn.Parameter(torch.zeros(d))  # "no action given" (dropped for guidance)
        self.text_proj = nn.Linear(config.text_dim, d)
        self.pooled_proj = nn.Linear(config.text_dim, d)
        self.null_text = nn.Parameter(torch.zeros(d))  # "no caption given"
        self.mode = nn.Embedding(2, d)  # 0 bidirectional, 1 block-causal
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        flow_dim = 2 * pt * ph * pw if config.warp else 0  # (dx, dy) a latent pixel
        if config.flow_overlap:  # (dx, dy) a latent pixel of a window 2ph x 2pw, after the residual's patch
            flow_dim = 2 * (2 * ph) * (2 * pw)
            tent = lambda p: 1 - ((torch.arange(2 * p) + 0.5) - p).abs() / p  # noqa: E731  # a token's weight; neighbours' sum to one
            self.register_buffer("flow_window", torch.outer(tent(ph), tent(pw)), persistent=False)
        self.final = nn.Linear(d, self.patch_dim + flow_dim)
        if config.pixel_head:
            c, w = config.latent_channels, config.pixel_head
            inputs = c * (2 + (config.anchor_frames if config.anchor else 0))
            self.pixel_head = nn.Sequential(
                nn.Conv2d(inputs, w, 3, padding=1), nn.SiLU(),
                nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.SiLU(),
                nn.Conv2d(w, w, 3, padding=4, dilation=4), nn.SiLU(),
                nn.Conv2d(w, c, 3, padding=1),
            )
        if config.anchor:
            self.anchor_embed = nn.Linear(self.patch_dim * config.anchor_frames, d)  # the anchor frames' patches, beside the frame's own
            self.anchor_flag = nn.Parameter(torch.zeros(d))  # "this frame is a difference from its anchor"
            # The anchor's own noise level (GameNGen embeds its context's): the frame the
            # difference is taken from was noised at it, and the model must know how much to undo.
            self.anchor_level_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: Xavier for linear layers, then every adaLN modulation and the
        output layer at zero, so each block starts as the identity and the model
        predicts zero velocity at initialisation (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        nn.init.normal_(self.mode.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        nn.init.zeros_(self.final_modulation[-1].weight)
        nn.init.zeros_(self.final_modulation[-1].bias)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)
        if self.config.pixel_head:  # its last layer at zero: the head adds nothing before it learns
            nn.init.zeros_(self.pixel_head[-1].weight)
            nn.init.zeros_(self.pixel_head[-1].bias)
        if self.config.anchor:  # the anchor starts unseen: an anchored frame begins as a copy of it
            nn.init.zeros_(self.anchor_embed.weight)
            nn.init.zeros_(self.anchor_embed.bias)
            nn.init.normal_(self.anchor_level_mlp[0].weight, std=0.02)
            nn.init.zeros_(self.anchor_level_mlp[2].weight)
            nn.init.zeros_(self.anchor_level_mlp[2].bias)

    def new_cache(self, batch: int, latent_size: tuple[int, int], window: int | None, dtype: torch.dtype, device: torch.device | str) -> KVCache:
        """A KV cache for ``batch`` rows of latent frames ``latent_size`` (h, w), its
        buffers allocated in ``dtype`` (the dtype keys have: bf16 under bf16 autocast)."""
        _, ph, pw = self.config.patch
        tokens = (latent_size[0] // ph) * (latent_size[1] // pw)
        heads = self.config.heads
        return KVCache(len(self.blocks), window).allocate(batch, heads, tokens, self.config.dim // heads, dtype, device)

    # -- pieces ------------------------------------------------------------------------------------
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T/pt, N, pt*ph*pw*C)."""
        pt, ph, pw = self.config.patch
        b, t, c, h, w = x.shape
        if t % pt or h % ph or w % pw:
            raise ValueError(f"latent of {t} frames x {h}x{w} does not divide into patches of {pt}x{ph}x{pw}")
        return rearrange(x, "b (t pt) c (h ph) (w pw) -> b t (h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, T/pt, N, pt*ph*pw*C) -> (B, T, C, H, W)."""
        pt, ph, pw = self.config.patch
        return rearrange(x, "b t (h w) (pt ph pw c) -> b (t pt) c (h ph) (w pw)", h=h // ph, w=w // pw, pt=pt, ph=ph, pw=pw)

    def overlap_flow(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, T, N, 2 * 2ph * 2pw) flow windows, one a token, -> (B, T, 2, H, W): each
        window centred on its token, weighted by ``flow_window`` and summed with its
        neighbours' (divided by the weights' sum, so the frame's edges are weighed alike)."""
        _, ph, pw = self.config.patch
        b, t = x.shape[:2]
        win = self.flow_window  # fp32, and so the blend: warp resamples in fp32
        cols = rearrange(x.float(), "b t n (k kh kw) -> (b t) k kh kw n", k=2, kh=2 * ph) * win[:, :, None]
        fold = dict(output_size=(h, w), kernel_size=(2 * ph, 2 * pw), stride=(ph, pw), padding=(ph // 2, pw // 2))
        flow = F.fold(rearrange(cols, "bt k kh kw n -> bt (k kh kw) n"), **fold)  # (BT, 2, H, W)
        weight = F.fold(win.reshape(1, -1, 1).expand(1, -1, x.shape[2]), **fold)  # (1, 1, H, W)
        return rearrange(flow / weight, "(b t) k hh ww -> b t k hh ww", b=b)

    def level_embedding(self, t: torch.Tensor, memo: KVCache | None = None) -> torch.Tensor:
        """:func:`timestep_embedding` of noise levels t (...), fp32; with ``memo`` (a KV
        cache: :meth:`KVCache.constant`) made once for each set of levels while in use."""
        if memo is None:
            return timestep_embedding(t, self.config.dim)
        return memo.constant(("levels", tuple(t.shape), tuple(t.flatten().tolist())), lambda: timestep_embedding(t, self.config.dim))

    def condition(
        self, t: torch.Tensor, actions: torch.Tensor, pooled: torch.Tensor, action_drop: torch.Tensor, causal: bool,
        memo: KVCache | None = None,
    ) -> torch.Tensor:
        """Per-frame conditioning vector (B, T/pt, D) from noise levels (B, T), actions
        (B, T, A), pooled text (B, D) and the attention mode (``memo``: level_embedding)."""
        pt = self.config.patch[0]
        t = rearrange(t, "b (t pt) -> b t pt", pt=pt).mean(-1)  # (B, T')
        a = rearrange(actions, "b (t pt) a -> b t pt a", pt=pt).mean(2)  # (B, T', A)
        ca = self.action_mlp(a.to(self.null_action.dtype))  # (B, T', D)
        ca = torch.where(action_drop[:, None, None], self.null_action.expand_as(ca), ca)
        mode = self.mode.weight[int(causal)]
        return self.time_mlp(self.level_embedding(t, memo).to(ca.dtype)) + ca + pooled[:, None] + mode  # (B, T', D)

    def text_state(self, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, text_drop: torch.Tensor | None = None) -> TextState:
        """Prepare the text encoder's outputs once (see :class:`TextState`)."""
        drop = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device) if text_drop is None else text_drop
        t, m, p = self.text_context(tokens, mask, pooled, drop)
        return TextState(t, m, p, [block.cross.keys_values(t) for block in self.blocks])

    def text_context(
        self, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, text_drop: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project the text encoder's outputs; dropped captions become one null token."""
        text = self.text_proj(tokens)  # (B, S, D)
        pooled = self.pooled_proj(pooled)  # (B, D)
        # Always through torch.where (even with nothing dropped): every parameter
        # takes part in every step, as DistributedDataParallel requires.
        null = self.null_text.to(text.dtype)
        text = torch.where(text_drop[:, None, None], null.expand_as(text), text)
        mask = torch.where(text_drop[:, None], torch.arange(mask.shape[1], device=mask.device)[None] == 0, mask)
        pooled = torch.where(text_drop[:, None], null.expand_as(pooled), pooled)
        return text, mask, pooled

    # -- forward -------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,  # (B, T, C, H, W) noisy latents
        t: torch.Tensor,  # (B, T) noise level of every frame, 0 clean .. 1 noise
        actions: torch.Tensor,  # (B, T, A)
        text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | TextState,  # tokens (B, S, Dt), mask (B, S), pooled (B, Dt)
        *,
        causal: bool,
        text_drop: torch.Tensor | None = None,  # (B,) bool: drop the caption (classifier-free guidance)
        action_drop: torch.Tensor | None = None,  # (B,) bool
        cache: KVCache | None = None,
        frame_offset: int | torch.Tensor = 0,  # index of x's first latent frame (after the cached ones); an int or a () long tensor
        append: bool = False,  # store x's first frame in the cache (x: that frame alone, or it and the next frame to compute: then the output is the computed frame's alone)
        anchor: torch.Tensor | None = None,  # (B, T, m*C, H, W) each anchored frame's last m frames, newest (its base) first
        anchored: torch.Tensor | None = None,  # (B, T) bool: which frames are anchored (default: all, if anchor is given)
        anchor_t: torch.Tensor | None = None,  # (B, T) the noise level each anchor frame was given (default 0)
        anchor_base: torch.Tensor | None = None,  # (B, T, C, H, W) with model.warp, the clean frame each difference is from (default: the newest anchor frame)
        frame_index: torch.Tensor | None = None,  # (T,) time index of each frame (default: frame_offset + 0, 1, ...)
        frame_mask: torch.Tensor | None = None,  # (T, T) bool: frame i attends to frame j (default: from causal)
        return_flow: bool = False,  # with model.warp: also return the flow (B, T, 2, H, W) it output (for a loss on it)
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, frames, c, h, w = x.shape
        dev = x.device
        if c != self.config.latent_channels:
            raise ValueError(f"the DiT takes {self.config.latent_channels} latent channels, got {c}")
        if t.shape != (b, frames) or actions.shape[:2] != (b, frames):
            raise ValueError(f"t must be (B, T) = {(b, frames)} and actions (B, T, A), got {tuple(t.shape)} and {tuple(actions.shape)}")
        if cache is not None and not causal:
            raise ValueError("a KV cache needs block-causal attention")
        if anchor is not None and not self.config.anchor:
            raise ValueError("this DiT was built without anchoring (model.anchor=false); it takes no anchor frames")
        if (frame_index is not None or frame_mask is not None) and (self.config.patch[0] != 1 or cache is not None):
            raise ValueError("frame_index and frame_mask need temporal patch 1 and no KV cache")
        action_drop = torch.zeros(b, dtype=torch.bool, device=dev) if action_drop is None else action_drop
        if isinstance(text, TextState):  # prepared once (its own drops applied)
            if text_drop is not None and text_drop.any():
                raise ValueError("drop captions when making the TextState (text_state(..., text_drop)), not here")
            state = text
        else:
            state = self.text_state(*text, text_drop)
        # Stepping eagerly on a CPU without autograd, the values a rollout's calls repeat (the rotary tables of a frame
        # index, the time embeddings of its noise levels) are made once and kept in the cache: KVCache.constant
        memo = cache if cache is not None and dev.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling() else None
        cond = self.condition(t, actions, state.pooled, action_drop, causal, memo)  # (B, T', D)
        if self.config.noise_input == "signal":
            x = x * (1 - t.to(x.dtype))[:, :, None, None, None]  # pure noise enters as zeros
        p = self.patchify(x)  # (B, T', N, P)
        tt, n = p.shape[1], p.shape[2]
        z = self.embed(p.to(state.tokens.dtype))  # (B, T', N, D)
        if self.config.anchor:
            # Always through the anchor embedding (zeros where nothing is anchored), so that
            # every parameter takes part in every step, as DistributedDataParallel requires.
            flag = torch.zeros(b, frames, dtype=torch.bool, device=dev) if anchor is None else (
                torch.ones(b, frames, dtype=torch.bool, device=dev) if anchored is None else anchored.to(dev))
            m = self.config.anchor_frames
            if anchor is not None and anchor.shape[2] != m * c:
                raise ValueError(f"anchor must hold {m} frames of {c} channels stacked ({m * c}), got {anchor.shape[2]}")
            a = x.new_zeros(b, frames, m * c, h, w) if anchor is None else anchor
            e = self.anchor_embed(self.patchify(a).to(z.dtype))  # (B, T', N, D) patchify stacks the m frames per patch
            # a frame not anchored gets what zeros would give, the bias (exactly), whatever its anchor rows hold
            z = z + torch.where(flag[:, :, None, None], e, self.anchor_embed.bias.to(e.dtype))
            level = torch.zeros(b, frames, device=dev) if anchor_t is None else anchor_t.to(dev)
            anchor_cond = self.anchor_flag + self.anchor_level_mlp(self.level_embedding(level, memo).to(cond.dtype))  # (B, T', D)
            cond = cond + flag[:, :, None].to(cond.dtype) * anchor_cond.to(cond.dtype)  # (B, T', D)

        pt, ph, pw = self.config.patch

        def positions() -> torch.Tensor:  # (T'N, 3): each token's (time, row, column)
            # frame_offset may be a () tensor: a compiled call then sees the same graph at every frame
            fr = torch.arange(tt, device=dev) + frame_offset // pt if frame_index is None else frame_index.to(dev)  # time index of each frame
            rows, cols = torch.arange(h // ph, device=dev), torch.arange(w // pw, device=dev)
            return torch.stack(torch.meshgrid(fr, rows, cols, indexing="ij"), -1).reshape(-1, 3)

        def make_rope(pos: torch.Tensor) -> Rope:  # cast once a call for every block (with memo, once a frame index): Rope
            return Rope(*rope_tables(pos, self.config.dim // self.config.heads, self.config.rope_theta))

        pos: torch.Tensor | None = None
        if memo is None:
            pos = positions()
            rope = make_rope(pos)
        else:  # a cache, which frame_index is refused with: the frames are offset, offset + 1, ...
            rope = memo.constant(("rope", int(frame_offset) // pt, tt, h // ph, w // pw), lambda: make_rope(positions()))
        mask = None
        store, compute = append, not append or tt == 2
        if cache is not None and tt != int(store) + int(compute):
            raise ValueError(
                f"with a KV cache the DiT takes one new frame a call (or, with append, the frame to store and the next to compute), got {tt}"
            )
        # (with a cache, each frame's view of it is its mask: KVCache.attend)
        if cache is None and frame_mask is not None:  # an explicit frame-level pattern, expanded to tokens
            mask = frame_mask.to(dev).repeat_interleave(n, 0).repeat_interleave(n, 1)  # (T'N, T'N)
        elif cache is None and causal and tt > 1:  # several frames: each sees itself and the earlier ones
            assert pos is not None  # (no cache, so no memo)
            mask = pos[:, 0, None] >= pos[None, :, 0]  # (T'N, T'N) by the tokens' frames
        # A call that stores a frame and computes the next returns the computed frame alone:
        # the stored frame's keys and values are all that is wanted of it, so the last block
        # takes its queries, cross-attention and MLP for the computed frame only, and nothing
        # after the blocks sees the stored one.
        keep = 1 if cache is not None and store and compute else None
        for i, block in enumerate(self.blocks):
            z = block(z, cond, state.kv[i], state.mask, rope, mask, cache, i, store, compute, keep if i == len(self.blocks) - 1 else None)
        if cache is not None and append:
            cache.advance()
        if keep is not None:  # the computed frame's inputs alone from here on (cond per latent frame, the rest per frame)
            raw = keep * pt
            cond, x = cond[:, -keep:], x[:, -raw:]
            if self.config.anchor:
                flag, a = flag[:, -raw:], a[:, -raw:]
            if anchor_base is not None:
                anchor_base = anchor_base[:, -raw:]
        shift, scale = self.final_modulation(cond)[:, :, None].chunk(2, dim=-1)  # (B, T', 1, D)
        out = self.final(self.final_norm(z) * (1 + scale) + shift)  # (B, T', N, P)
        if self.config.flow_overlap:  # the residual's patches, then the flow blended over overlapping windows
            out = torch.cat([self.unpatchify(out[..., : self.patch_dim], h, w), self.overlap_flow(out[..., self.patch_dim :], h, w)], dim=2)
        else:
            out = self.unpatchify(out, h, w)  # (B, T, C (+2 with warp), H, W)
        if return_flow and not self.config.warp:
            raise ValueError("return_flow: this DiT outputs no flow (model.warp=false)")
        if self.config.warp:
            # the flow is output in patch widths (a token's size), so that its scale is the residual's
            # (a ball's motion is half a patch); in latent pixels from here on
            flow = out[:, :, c:] * torch.tensor([pw, ph], dtype=out.dtype, device=dev)[:, None, None]
            res = out[:, :, :c]
            if anchor is None:  # nothing anchored: the residual alone (the final layer, flow rows and all, is one parameter)
                out = res
            else:
                base = a[:, :, :c] if anchor_base is None else anchor_base.to(dev)  # the frame an anchored difference is taken from
                moved = warp_frames(base, flow, self.config.warp_mode) - base.float()  # (B, T, C, H, W) the anchor moved along the flow, as a difference
                out = torch.where(flag[:, :, None, None, None], res + moved.to(res.dtype), res)
        if self.config.pixel_head:
            parts = [out, x.to(out.dtype)]  # x: the frame's (scaled) input
            if self.config.anchor:
                parts.append(torch.where(flag[:, :, None, None, None], a, 0.0).to(out.dtype))  # its anchor frames (zeros where not anchored)
            feats = rearrange(torch.cat(parts, dim=2), "b t c h w -> (b t) c h w")
            out = out + rearrange(self.pixel_head(feats), "(b t) c h w -> b t c h w", b=b)  # (B, T, C, H, W)
        if return_flow:
            return out.to(x.dtype), flow
        return out.to(x.dtype)  # (B, T, C, H, W)

