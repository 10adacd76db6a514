"""The video compression network: a causal 3-D convolutional autoencoder.

Video ``(B, T, 3, H, W)`` in [-1, 1] maps to a latent ``(B, T', C, H/f, W/f)`` with
spatial factor ``f`` (4 or 8) and temporal factor ``tf`` (1, 2 or 4; ``T' = 1 + (T -
1) / tf``: the first frame gets a latent frame of its own, as in CogVideoX and Cosmos,
so a single image is a valid clip). Everything that looks across time is a *causal*
convolution (it pads with the first frame, never with later ones), so a latent frame
never depends on later video frames and the network can encode and decode one latent
frame at a time (``encode_stream`` / ``decode_stream``) with caches of the last few
frames each temporal layer saw, with the same result as the whole clip at once.

The 3-D convolutions are factorised (as in S3D and R(2+1)D): a 3x3 spatial
convolution per frame, then a causal temporal convolution over ``k_t`` frames per
pixel, written as a 1x1 convolution of the frames stacked along channels. On a CPU
this runs 2-4 times faster than a dense 3x3x3 kernel, with the same receptive field.

Latents are normalised per channel by a shift and scale fitted on data
(:meth:`Autoencoder.fit_latent_stats`) and stored with the weights, so the diffusion
model sees roughly unit-variance latents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from worldsim.checkpoint import load_checkpoint


@dataclass
class AutoencoderConfig:
    """Architecture of the video autoencoder (conf/ae/*.yaml)."""

    spatial_factor: int = 8  # 4 or 8: latent is H/f x W/f
    temporal_factor: int = 1  # 1, 2 or 4: one latent frame per 1, 2 or 4 video frames (after the first)
    latent_channels: int = 16
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # widths from full resolution down
    temporal_kernel: int = 2  # frames each temporal convolution sees (causal)
    latent_norm_weight: float = 1e-4  # small penalty on |z|^2 keeps the latent bounded
    identity: bool = False  # pixel space: encode and decode do nothing (for tests and tiny runs)

    def __post_init__(self) -> None:
        if self.identity:
            self.spatial_factor, self.temporal_factor, self.latent_channels = 1, 1, 3
            return
        if self.spatial_factor not in (4, 8):
            raise ValueError(f"ae.spatial_factor must be 4 or 8, got {self.spatial_factor}")
        if self.temporal_factor not in (1, 2, 4):
            raise ValueError(f"ae.temporal_factor must be 1, 2 or 4, got {self.temporal_factor}")
        levels = {4: 3, 8: 4}[self.spatial_factor]
        if len(self.channels) != levels:
            raise ValueError(f"ae.channels needs {levels} widths for spatial factor {self.spatial_factor}, got {self.channels}")
        if self.temporal_kernel < 1:
            raise ValueError(f"ae.temporal_kernel must be >= 1, got {self.temporal_kernel}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- building blocks ---------------------------------------------------------------------------
# Inside the network a clip is a stack of frames, (B*T, C, H, W) in channels-last
# memory (what the CPU convolution kernels want), with T passed along; only the
# temporal layers look across frames. Streaming state is a dict keyed by module,
# holding the last input frames each temporal layer needs.
Cache = dict[Any, Any]


def _frames(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class TemporalConv(nn.Module):
    """Causal convolution over ``k`` frames per pixel: out[t] = W [x[t-k+1] .. x[t]].

    Frames before the first are copies of the first. With a ``cache`` (streaming), the
    last ``k - 1`` frames of the previous call stand in front instead.
    """
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.k = k
        self.proj = nn.Conv2d(c_in * k, c_out, 1)

    def forward(self, x: torch.Tensor, t: int, cache: Cache | None = None) -> torch.Tensor:
        k = self.k
        if k == 1:
            return self.proj(x)
        clip = rearrange(x, "(b t) c h w -> b t c h w", t=t)
        past = None if cache is None else cache.get(id(self))
        if past is None:
            past = clip[:, :1].expand(-1, k - 1, -1, -1, -1)
        full = torch.cat([past, clip], dim=1)  # (B, k-1+T, C, H, W)
        if cache is not None:
            cache[id(self)] = full[:, -(k - 1) :].detach()
        stacked = torch.cat([full[:, i : i + t] for i in range(k)], dim=2)  # (B, T, k*C, H, W)
        return self.proj(_frames(rearrange(stacked, "b t c h w -> (b t) c h w")))


class Block(nn.Module):
    """Residual block: 3x3 spatial conv, SiLU, causal temporal conv. No normalisation
    layer: per-frame statistics would cost a quarter of the decoder's time, and the
    zero-initialised residual branch trains without one."""
    def __init__(self, c: int, k_t: int):
        super().__init__()
        self.spatial = nn.Conv2d(c, c, 3, padding=1)
        self.temporal = TemporalConv(c, c, k_t)

    def forward(self, x: torch.Tensor, t: int, cache: Cache | None = None) -> torch.Tensor:
        return x + self.temporal(F.silu(self.spatial(x)), t, cache)


class Up(nn.Module):
    """Twice the resolution: a 1x1 convolution to 4 sub-pixels per pixel, then
    pixel shuffle (same arithmetic as a 2x2 transposed convolution, but it runs on
    the fast convolution kernels)."""
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, 4 * c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _frames(F.pixel_shuffle(self.proj(x), 2))  # (N, c_out, 2H, 2W)


class TemporalDown(nn.Module):
    """Merge groups of ``s`` frames (after the first frame, which stays alone):
    T = 1 + s n  ->  1 + n frames, causally."""
    def __init__(self, c: int, s: int):
        super().__init__()
        self.s = s
        self.proj = nn.Conv2d(c * s, c, 1)

    def forward(self, x: torch.Tensor, t: int, first: bool) -> tuple[torch.Tensor, int]:
        clip = rearrange(x, "(b t) c h w -> b t c h w", t=t)
        if first:  # the first frame stands for a whole group: pad it with copies of itself
            clip = torch.cat([clip[:, :1].expand(-1, self.s - 1, -1, -1, -1), clip], dim=1)
        if clip.shape[1] % self.s:
            raise ValueError(f"the frames after the first must come in groups of {self.s}")
        g = rearrange(clip, "b (n s) c h w -> (b n) (s c) h w", s=self.s)
        return self.proj(_frames(g)), clip.shape[1] // self.s


class TemporalUp(nn.Module):
    """The inverse of :class:`TemporalDown`: each latent frame becomes ``s`` frames,
    except the very first, which becomes one."""
    def __init__(self, c: int, s: int):
        super().__init__()
        self.s = s
        self.proj = nn.Conv2d(c, c * s, 1)

    def forward(self, x: torch.Tensor, t: int, first: bool) -> tuple[torch.Tensor, int]:
        y = rearrange(self.proj(x), "(b n) (s c) h w -> b (n s) c h w", n=t, s=self.s)
        if first:
            y = y[:, self.s - 1 :]
        return _frames(rearrange(y, "b t c h w -> (b t) c h w")), y.shape[1]


# -- the autoencoder ----------------------------------------------------------------------------
class Autoencoder(nn.Module):
    """Causal video autoencoder; see the module docstring.

    ``encode(video)`` (B, T, 3, H, W) in [-1, 1] -> normalised latent (B, T', C, h, w);
    ``decode(latent)`` -> video. ``encode_stream`` / ``decode_stream`` do the same one
    latent frame at a time, carrying a cache.

    Layout: 3x3 convolutions (stride 2 to go down, pixel shuffle to go up), with the
    temporal layers at the lowest resolution, where they are cheap. The decoder is
    the lighter half, and nothing of it runs at full resolution: the simulator runs
    it once per generated frame.
    """
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))
        if config.identity:
            return
        ch, k_t, tf = config.channels, config.temporal_kernel, config.temporal_factor
        self.enc_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.enc_down = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1) for i in range(len(ch) - 1))
        self.enc_mid = nn.ModuleList([Block(ch[-1], k_t), Block(ch[-1], k_t)])
        self.enc_tdown = TemporalDown(ch[-1], tf) if tf > 1 else None
        self.enc_out = nn.Conv2d(ch[-1], config.latent_channels, 1)

        self.dec_in = nn.Conv2d(config.latent_channels, ch[-1], 3, padding=1)
        self.dec_tup = TemporalUp(ch[-1], tf) if tf > 1 else None
        self.dec_mid = nn.ModuleList([Block(ch[-1], k_t), Block(ch[-1], k_t)])
        # Up to half resolution, then the last 3x3 convolution writes the 2x2
        # sub-pixels of every full-resolution pixel (nothing runs at full resolution).
        self.dec_up = nn.ModuleList(Up(ch[i], ch[i - 1]) for i in range(len(ch) - 1, 1, -1))
        self.dec_refine = nn.ModuleList(nn.Conv2d(ch[i - 1], ch[i - 1], 3, padding=1) for i in range(len(ch) - 1, 1, -1))
        self.dec_out = nn.Conv2d(ch[1], 3 * 4, 3, padding=1)
        self.initialize_weights()
        self.to(memory_format=torch.channels_last)

    def initialize_weights(self) -> None:
        """Residual branches start at zero (each block begins as the identity), so
        the stacks train from the first step without a normalisation layer."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Block):
                nn.init.zeros_(m.temporal.proj.weight)
    # -- shapes -------------------------------------------------------------------------------
    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.temporal_factor

    def video_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.temporal_factor

    def check_video(self, video: torch.Tensor) -> None:
        """Raise ValueError naming what is wrong with a (B, T, 3, H, W) video."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        f = self.spatial_factor
        h, w = video.shape[-2:]
        if h % f or w % f:
            raise ValueError(
                f"frames of {h}x{w} cannot be compressed by {f}: height and width must be multiples of {f} "
                f"(nearest: {max(f, round(h / f) * f)}x{max(f, round(w / f) * f)})"
            )
        t, tf = video.shape[1], self.temporal_factor
        if (t - 1) % tf:
            raise ValueError(f"with temporal factor {tf} a clip needs 1 + {tf}n frames, got {t}")

    # -- whole clips ------------------------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> normalised latent (B, T', C, H/f, W/f)."""
        self.check_video(video)
        z = self._encode(rearrange(video, "b t c h w -> b c t h w"), None, first=True)
        return self.normalize(rearrange(z, "b c t h w -> b t c h w"))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, T', C, h, w) -> video (B, T, 3, h f, w f) in about [-1, 1]."""
        if latent.ndim != 5 or latent.shape[2] != self.latent_channels:
            raise ValueError(f"latent must be (B, T, {self.latent_channels}, h, w), got {tuple(latent.shape)}")
        z = rearrange(self.denormalize(latent), "b t c h w -> b c t h w")
        return rearrange(self._decode(z, None, first=True), "b c t h w -> b t c h w")

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and the (unnormalised) latent, for training."""
        self.check_video(video)
        z = self._encode(rearrange(video, "b t c h w -> b c t h w"), None, first=True)
        recon = self._decode(z, None, first=True)
        return rearrange(recon, "b c t h w -> b t c h w"), z

    # -- streaming ------------------------------------------------------------------------------------
    def encode_stream(self, frames: torch.Tensor, cache: Cache) -> torch.Tensor:
        """Encode the video frames of one latent frame: (B, n, 3, H, W) -> (B, 1, C, h, w).

        ``n`` is 1 for the first call on a fresh ``cache`` (a dict) and the temporal
        factor after that; results equal :meth:`encode` on the whole clip.
        """
        first = not cache.get("started", False)
        want = 1 if first else self.temporal_factor
        if frames.shape[1] != want:
            raise ValueError(f"encode_stream takes {want} frame(s) for this latent frame, got {frames.shape[1]}")
        z = self._encode(rearrange(frames, "b t c h w -> b c t h w"), cache, first=first)
        cache["started"] = True  # type: ignore[assignment]
        return self.normalize(rearrange(z, "b c t h w -> b t c h w"))

    def decode_stream(self, latent: torch.Tensor, cache: Cache) -> torch.Tensor:
        """Decode one latent frame (B, 1, C, h, w) -> its video frames (B, n, 3, H, W)."""
        first = not cache.get("started", False)
        z = rearrange(self.denormalize(latent), "b t c h w -> b c t h w")
        video = self._decode(z, cache, first=first)
        cache["started"] = True  # type: ignore[assignment]
        return rearrange(video, "b c t h w -> b t c h w")

    # -- internals ----------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, cache: Cache | None, *, first: bool) -> torch.Tensor:
        """(B, C, T, H, W) video -> (B, C', T', h, w) unnormalised latent."""
        if self.config.identity:
            return x
        b, t = x.shape[0], x.shape[2]
        h = F.silu(self.enc_in(_frames(rearrange(x, "b c t h w -> (b t) c h w"))))  # (B*T, c0, H, W)
        for down in self.enc_down:
            h = F.silu(down(h))  # (B*T, c_{i+1}, H/2^(i+1), W/2^(i+1))
        for block in self.enc_mid:
            h = block(h, t, cache)
        if self.enc_tdown is not None:
            h, t = self.enc_tdown(h, t, first)  # (B*T', c, h, w)
        z = self.enc_out(h)  # (B*T', C', h, w)
        return rearrange(z, "(b t) c h w -> b c t h w", b=b)

    def _decode(self, z: torch.Tensor, cache: Cache | None, *, first: bool) -> torch.Tensor:
        """(B, C', T', h, w) latent -> (B, 3, T, H, W) video."""
        if self.config.identity:
            return z
        b, t = z.shape[0], z.shape[2]
        h = F.silu(self.dec_in(_frames(rearrange(z, "b c t h w -> (b t) c h w"))))  # (B*T', c, h, w)
        if self.dec_tup is not None:
            h, t = self.dec_tup(h, t, first)  # (B*T, c, h, w)
        for block in self.dec_mid:
            h = block(h, t, cache)
        for up, refine in zip(self.dec_up, self.dec_refine):
            h = F.silu(refine(F.silu(up(h))))  # (B*T, c_{i-1}, 2h, 2w)
        video = F.pixel_shuffle(self.dec_out(h), 2)  # (B*T, 3, H, W)
        return rearrange(video, "(b t) c h w -> b c t h w", b=b)

    # -- latent statistics -------------------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        shape = (1, 1, -1, 1, 1)
        return (z - self.latent_shift.view(shape)) / self.latent_scale.view(shape)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        shape = (1, 1, -1, 1, 1)
        return z * self.latent_scale.view(shape) + self.latent_shift.view(shape)

    @torch.no_grad()
    def fit_latent_stats(self, videos: list[torch.Tensor]) -> None:
        """Set the per-channel shift and scale from clips of real data."""
        if self.config.identity:
            return
        zs = [rearrange(self._encode(rearrange(v, "b t c h w -> b c t h w"), None, first=True), "b c t h w -> c (b t h w)") for v in videos]
        z = torch.cat(zs, dim=1).float()
        self.latent_shift.copy_(z.mean(1))
        self.latent_scale.copy_(z.std(1).clamp_min(1e-3))


def reconstruction_loss(
    video: torch.Tensor, recon: torch.Tensor, segmentation: torch.Tensor | None, *, object_weight: float = 8.0
) -> torch.Tensor:
    """L1 + L2 per pixel, with pixels of objects weighted ``object_weight`` times as
    much as background (small objects are a tiny fraction of the pixels, and a blur
    that loses them costs little in a plain average).

    video, recon: (B, T, 3, H, W); segmentation: (B, T, H, W) ids (0 background).
    """
    err = (recon - video).abs() + (recon - video).square()  # (B, T, 3, H, W)
    err = err.mean(2)  # (B, T, H, W)
    if segmentation is None:
        return err.mean()
    w = 1.0 + (object_weight - 1.0) * (segmentation > 0).to(err.dtype)
    return (err * w).sum() / w.sum()


def load_autoencoder(source: str, *, map_location: str = "cpu") -> Autoencoder:
    """An autoencoder from ``"identity"`` (pixel space), a run directory (its latest
    checkpoint) or a checkpoint file; EMA weights when the run kept them."""
    if source == "identity":
        return Autoencoder(AutoencoderConfig(identity=True)).eval()

    ckpt = load_checkpoint(source, kind="autoencoder", map_location=map_location)
    ae = Autoencoder(AutoencoderConfig(**ckpt["config"]["ae"]))
    ae.load_state_dict(ckpt["ema"] or ckpt["model"])
    return ae.eval()
