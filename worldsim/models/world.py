"""The trainable world model: the text encoder and the DiT, as one module, plus
loading a trained one (with its frozen autoencoder) from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from worldsim.checkpoint import load_checkpoint, require_same
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.dit import DiT, DiTConfig, KVCache
from worldsim.models.text import TextConfig, TextEncoder


class WorldModel(nn.Module):
    """Text encoder + DiT: ``velocity(latents, t, actions, captions, ...)``."""

    def __init__(self, dit: DiTConfig, text: TextConfig):
        super().__init__()
        self.text = TextEncoder(text)
        if dit.text_dim != text.dim:
            raise ValueError(f"model.text_dim {dit.text_dim} must equal text.dim {text.dim}")
        self.dit = DiT(dit)

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.text.encode(captions)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        actions: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | list[str],
        *,
        causal: bool,
        text_drop: torch.Tensor | None = None,
        action_drop: torch.Tensor | None = None,
        cache: KVCache | None = None,
        frame_offset: int = 0,
        append: bool = False,
        **frames: torch.Tensor | None,
    ) -> torch.Tensor:
        """The DiT's velocity; ``text`` is either captions or :meth:`encode_text`'s output;
        ``frames``: the DiT's per-frame arguments (anchor, anchored, frame_index, frame_mask)."""
        if isinstance(text, list):
            text = self.encode_text(text)
        return self.dit(
            x, t, actions, text, causal=causal, text_drop=text_drop, action_drop=action_drop, cache=cache, frame_offset=frame_offset, append=append,
            **frames,
        )


@dataclass
class LoadedWorld:
    """A trained world model and everything needed to use it."""

    model: WorldModel
    autoencoder: Autoencoder
    config: dict[str, Any]  # the checkpoint's config (dit, text, flow, ae, data facts)
    path: str
    step: int
    compute: dict[str, float]  # training FLOPs and wall seconds recorded up to this step ({} if unknown)


def load_world(path: str, *, map_location: str = "cpu", ema: bool = True, expect: dict[str, Any] | None = None) -> LoadedWorld:
    """Load a DiT checkpoint (a run directory or a file) with its text encoder and
    frozen autoencoder. ``expect``: config parts that must match (else CheckpointError
    naming the differing keys). EMA weights by default, when the run kept them."""
    ckpt = load_checkpoint(path, kind="dit", map_location=map_location)
    cfg = ckpt["config"]
    if expect:
        for part, wanted in expect.items():
            require_same(cfg.get(part, {}), wanted, what=part, source=ckpt["path"])
    model = WorldModel(DiTConfig(**cfg["dit"]), TextConfig(**cfg["text"]))
    model.load_state_dict(ckpt["ema"] if ema and ckpt.get("ema") else ckpt["model"])
    ae = Autoencoder(AutoencoderConfig(**cfg["ae"]))
    ae.load_state_dict(ckpt["autoencoder"])
    return LoadedWorld(model.eval(), ae.eval(), cfg, ckpt["path"], int(ckpt["step"]), dict(ckpt.get("compute") or {}))


def save_world(
    path: str,
    model: WorldModel,
    autoencoder: Autoencoder,
    *,
    resolution: tuple[int, int],
    fps: int,
    step: int = 0,
    flow: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a DiT checkpoint that :func:`load_world` reads (what training writes,
    without the optimizer): for exporting and for benchmarks of untrained models."""
    import dataclasses

    from worldsim.checkpoint import save_checkpoint
    from worldsim.diffusion.flow import FlowConfig

    config = {
        "dit": model.dit.config.to_dict(),
        "text": dataclasses.asdict(model.text.config),
        "flow": flow or dataclasses.asdict(FlowConfig()),
        "ae": dataclasses.asdict(autoencoder.config),
        "autoencoder_source": "saved",
        "data": {"resolution": list(resolution), "fps": fps, "clip_frames": 16},
        **(extra or {}),
    }
    payload = {"kind": "dit", "step": step, "config": config, "model": model.state_dict(), "ema": {}, "autoencoder": autoencoder.state_dict()}
    return str(save_checkpoint(path, payload))
