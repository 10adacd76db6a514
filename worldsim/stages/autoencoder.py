"""The autoencoder stage: train the video compression network; score its reconstructions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldsim.checkpoint import require_same
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig, reconstruction_loss
from worldsim.stages import image_grid, to_uint8


class AutoencoderStage:
    """Train the video autoencoder: reconstruction with object pixels weighted up,
    plus a small penalty on the latent's magnitude."""

    kind = "autoencoder"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        opts = dict(cfg.stage_options)
        self.ae_config = AutoencoderConfig(**opts.get("ae", {}))
        if self.ae_config.identity:
            raise ValueError("ae=identity has nothing to train; it is used as autoencoder=identity by stage=dit")
        self.object_weight = float(opts.get("object_weight", 8.0))
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

    def loss(self, module: nn.Module, batch: dict[str, Any], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        video = batch["frames"]  # (B, T, 3, H, W)
        recon, z = module(video)
        rec = reconstruction_loss(video, recon.float(), batch["segmentation"], object_weight=self.object_weight)
        reg = z.float().square().mean()
        return rec + self.ae_config.latent_norm_weight * reg, {"reconstruction": rec.item(), "latent_sq": reg.item()}

    @torch.no_grad()
    def log_samples(self, writer: Any, step: int, module: nn.Module, batch: dict[str, Any], device: torch.device, precision: str) -> None:
        from worldsim.evaluate.metrics import psnr
        from worldsim.train import autocast

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
        """Fit the latent's per-channel shift and scale to the data the weights now see."""
        clips = [dataset[(i, 0, self.clip_frames)]["frames"][None].to(device) for i in range(min(32, len(dataset.episodes)))]
        for m in (module, ema):
            if m is not None:
                m.eval()
                m.fit_latent_stats(clips)
                m.train()

    @torch.no_grad()
    def evaluate(self, module: nn.Module, device: torch.device, precision: str) -> dict[str, Any]:
        return evaluate_autoencoder(module, self.cfg.data, device=device, precision=precision, episodes=self.cfg.eval_episodes)


@torch.no_grad()
def evaluate_autoencoder(
    ae: Autoencoder, data: str | Path | list[str], *, device: torch.device | str = "cpu", precision: str = "fp32", episodes: int = 32,
    split: str = "test",
) -> dict[str, Any]:
    """The reconstruction ceiling on held-out episodes.

    Reports PSNR and SSIM (mean over frames), the object position error through the
    autoencoder (distance between the centroid of each object's colour in the
    reconstruction and in the original, px, mean over objects seen in both), and the
    fraction of (frame, object) pairs where an object visible in the original (3+
    pixels) is missing from the reconstruction. The ``episodes`` are spread evenly
    over the split (every scene and engine), and each figure is also given per scene.
    """
    from worldsim.data.dataset import select_episodes
    from worldsim.data.episode import load_episode
    from worldsim.evaluate.detect import detect_objects
    from worldsim.evaluate.metrics import psnr, ssim
    from worldsim.sim import palette
    from worldsim.train import autocast

    device = torch.device(device)
    roots = data if isinstance(data, (list, tuple)) else [data]
    every = [(Path(r), row) for r in roots for row in select_episodes(r, split=split)]
    if not every:
        raise ValueError(f"no {split} episodes in {roots} to evaluate the autoencoder on")
    pick = np.linspace(0, len(every) - 1, min(episodes, len(every))).round().astype(int)
    rows = [every[i] for i in sorted(set(pick.tolist()))]
    psnrs, ssims, errors, lost, visible = [], [], [], 0, 0
    per_scene: dict[str, dict[str, list[Any]]] = {}
    for root, row in rows:
        ep = load_episode(root / row["path"])
        frames = ep["frames"]
        t = ae.video_frames(ae.latent_frames(len(frames)))
        frames = frames[:t]
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)[None].to(device)
        with autocast(device, precision):
            recon = ae.decode(ae.encode(video))
        out = to_uint8(recon[0])
        psnrs.append(psnr(frames, out))
        ssims.append(ssim(frames, out))
        colours = np.array([palette.rgb(o["colour"]) for o in row["params"]["objects"]])
        truth = detect_objects(frames, colours, min_pixels=3)
        pred = detect_objects(out, colours, min_pixels=1)
        both = truth["present"] & pred["present"]
        errors.append(np.linalg.norm(truth["centroids"][both] - pred["centroids"][both], axis=-1))
        lost += int((truth["present"] & ~pred["present"]).sum())
        visible += int(truth["present"].sum())
        sc = per_scene.setdefault(row["scene"], {"psnr": [], "err": [], "lost": [], "visible": []})
        sc["psnr"].append(psnrs[-1])
        sc["err"].append(errors[-1])
        sc["lost"].append(int((truth["present"] & ~pred["present"]).sum()))
        sc["visible"].append(int(truth["present"].sum()))
    err = np.concatenate(errors) if errors else np.zeros(0)
    scenes = {}
    for name, sc in sorted(per_scene.items()):
        e = np.concatenate(sc["err"])
        scenes[name] = {"psnr": round(float(np.mean(np.concatenate(sc["psnr"]))), 3), "position_error_px": round(float(e.mean()), 4) if len(e) else None,
                        "objects_lost_fraction": round(sum(sc["lost"]) / max(sum(sc["visible"]), 1), 5)}
    return {
        "episodes": len(rows),
        "psnr": round(float(np.mean(np.concatenate(psnrs))), 3),
        "ssim": round(float(np.mean(np.concatenate(ssims))), 4),
        "position_error_px": round(float(err.mean()), 4) if len(err) else None,
        "position_error_px_p95": round(float(np.percentile(err, 95)), 4) if len(err) else None,
        "objects_lost_fraction": round(lost / max(visible, 1), 5),
        "scenes": scenes,
        "config": dataclasses.asdict(ae.config),
    }
