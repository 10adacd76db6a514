"""The autoencoder stage: train the video compression network (its reconstructions are
scored by :mod:`worldsim.evaluate.autoencoder`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from worldsim.checkpoint import require_same
from worldsim.frames import to_uint8
from worldsim.models.autoencoder import Autoencoder, reconstruction_loss
from worldsim.pixel_metrics import psnr
from worldsim.runtime import autocast
from worldsim.training.stages import AutoencoderStageConfig
from worldsim.video import image_grid


class AutoencoderStage:
    """Train the video autoencoder: reconstruction with object pixels weighted up,
    plus a small penalty on the latent's magnitude."""

    kind = "autoencoder"

    def __init__(self, cfg: Any, options: AutoencoderStageConfig):
        self.cfg = cfg
        self.ae_config = options.ae
        if self.ae_config.identity:
            raise ValueError("ae=identity has nothing to train; it is used as autoencoder=identity by stage=dit")
        self.object_weight = options.object_weight
        tf = self.ae_config.temporal_factor
        if (cfg.clip_frames - 1) % tf:
            raise ValueError(f"clip_frames must be 1 + {tf}n with temporal factor {tf}, got {cfg.clip_frames}")
        self.clip_frames = cfg.clip_frames
        self.resolution = tuple(cfg.resolution) if cfg.resolution else None

    def build(self) -> nn.Module:
        return Autoencoder(self.ae_config)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {}

    def checkpoint_config(self) -> dict[str, Any]:
        return {"ae": self.ae_config.to_dict()}

    def check_resume(self, state: dict[str, Any]) -> None:
        require_same(state["config"]["ae"], self.ae_config.to_dict(), what="autoencoder", source=state["path"])

    def prepare_data(self, dataset: Any, buckets: list[dict[str, Any]]) -> None:
        f, tf = self.ae_config.spatial_factor, self.ae_config.temporal_factor
        for b in buckets:
            h, w = b["resolution"]
            if h % f or w % f:
                raise ValueError(f"frames of {h}x{w} cannot be compressed by {f}: height and width must be multiples of {f}")
            if (b["frames"] - 1) % tf:
                raise ValueError(f"clips must be 1 + {tf}n frames with temporal factor {tf}, got a bucket of {b['frames']}")
        self.dataset = dataset

    def step_kind(self, gen: torch.Generator) -> str:
        return self.kind

    def loss(self, module: nn.Module, batch: dict[str, Any], gen: torch.Generator, kind: str = "autoencoder") -> tuple[torch.Tensor, dict[str, float]]:
        video = batch["frames"]  # (B, T, 3, H, W)
        recon, z = module(video)
        rec = reconstruction_loss(video, recon.float(), batch["segmentation"], object_weight=self.object_weight)
        reg = z.float().square().mean()
        return rec + self.ae_config.latent_norm_weight * reg, {"reconstruction": rec.item(), "latent_sq": reg.item()}

    @torch.no_grad()
    def log_samples(self, writer: Any, step: int, module: nn.Module, batch: dict[str, Any], device: torch.device, precision: str) -> None:
        module.eval()
        video = batch["frames"][:4]
        with autocast(device, precision):
            recon, _ = module(video)
        module.train()
        a, b = to_uint8(video), to_uint8(recon)
        writer.add_image("samples/original_above_reconstruction", image_grid([x for pair in zip(a, b) for x in pair]), step, dataformats="HWC")
        writer.add_scalar("train/psnr", float(np.mean(psnr(a, b))), step)

    @torch.no_grad()
    def before_checkpoint(self, module: nn.Module, ema: nn.Module | None, dataset: Any, device: torch.device, precision: str) -> None:
        """Fit the latent's per-channel shift and scale to the data the weights now see
        (the first 32 episodes' first frames: clip_frames of each, or as many of 1 + tf*k
        as a shorter episode has, which a bucketed run trains on too)."""
        tf = self.ae_config.temporal_factor
        lengths = [1 + (min(self.clip_frames, int(row["num_frames"])) - 1) // tf * tf for row in dataset.episodes[:32]]
        clips = [dataset[(i, 0, n)]["frames"][None].to(device) for i, n in enumerate(lengths)]
        for m in (module, ema):
            if m is not None:
                m.eval()
                m.fit_latent_stats(clips)
                m.train()
