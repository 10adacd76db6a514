"""The trainable world model (the text encoder and the DiT as one module) and the one
contract of a trained world: :class:`WorldConfig`, what every DiT checkpoint records,
validated on load, with :func:`load_world` and :func:`save_world` to read and write it.

Checkpoints written before a field existed keep loading: a missing field takes the
default that reproduces what those runs did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from worldsim.checkpoint import CheckpointError, load_checkpoint, require_same, save_checkpoint
from worldsim.diffusion.flow import FlowConfig
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


# Sizes beyond these are refused before anything is built: a checkpoint from outside
# must not make worldsim allocate what no machine has (a 64x64 world needs far less).
LIMITS = {
    "dit.dim": 8192, "dit.depth": 128, "dit.heads": 256, "dit.latent_channels": 4096, "dit.action_dim": 64, "dit.text_dim": 8192,
    "text.dim": 8192, "text.depth": 64, "text.heads": 256, "text.max_length": 8192, "ae.latent_channels": 4096,
}
MAX_PARAMETERS = 4e9


@dataclass
class DataFacts:
    """What a world was trained on that using it needs."""

    resolution: list[int]  # [H, W] of the frames
    fps: int = 20
    clip_frames: int = 16
    buckets: list[dict[str, Any]] | None = None


@dataclass
class WorldConfig:
    """The config of a trained world, as its checkpoint records it."""

    dit: DiTConfig
    text: TextConfig
    ae: AutoencoderConfig
    data: DataFacts
    flow: FlowConfig = field(default_factory=FlowConfig)
    autoencoder_source: str = "saved"

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))

    @property
    def history(self) -> int:
        """Latent frames of history the model was trained to see when stepping: the
        clip length minus one with the simulator's task, else the default window 8."""
        return self.data.clip_frames - 1 if self.flow.simulator_share > 0 else 8

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "the checkpoint") -> "WorldConfig":
        """Validate a recorded config (schema, then sane sizes) before anything is
        built; CheckpointError naming ``source`` and what is wrong."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: its config is {type(d).__name__}, not a mapping; it was not written by worldsim")
        missing = [k for k in ("dit", "text", "ae", "data") if not isinstance(d.get(k), dict)]
        if missing:
            raise CheckpointError(f"{source}: its config lacks {missing} (has {sorted(d)}); it was not written by worldsim's DiT training")
        parts: dict[str, Any] = {}
        for name, kind in (("dit", DiTConfig), ("text", TextConfig), ("ae", AutoencoderConfig), ("data", DataFacts), ("flow", FlowConfig)):
            values = d.get(name) or {}
            if name == "flow" and not values:
                parts[name] = FlowConfig()
                continue
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise CheckpointError(f"{source}: config.{name} has unknown keys {unknown} (known: {sorted(known)}); "
                                      "it was written by another program or a newer worldsim")
            for key, limit in LIMITS.items():
                part, k = key.split(".")
                v = values.get(k) if part == name else None
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= limit):
                    raise CheckpointError(f"{source}: config.{key} = {v!r} is outside (0, {limit}]; refusing to build it")
            try:
                parts[name] = kind(**values)
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{source}: config.{name} is invalid: {e}") from None
        res = parts["data"].resolution
        if not (isinstance(res, (list, tuple)) and len(res) == 2 and all(isinstance(v, int) and 0 < v <= 8192 for v in res)):
            raise CheckpointError(f"{source}: config.data.resolution must be [H, W] with sides in (0, 8192], got {res!r}")
        dit = parts["dit"]
        estimate = dit.depth * 16 * dit.dim**2 + parts["text"].depth * 12 * parts["text"].dim ** 2
        if estimate > MAX_PARAMETERS:
            raise CheckpointError(f"{source}: its config describes about {estimate:.2g} parameters (over {MAX_PARAMETERS:.0g}); refusing to build it")
        return cls(**parts, autoencoder_source=str(d.get("autoencoder_source", "saved")))


def json_ready(x: Any) -> Any:
    """Tuples as lists, recursively: what a checkpoint's config holds after a JSON round trip."""
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    return x


@dataclass
class LoadedWorld:
    """A trained world model and everything needed to use it."""

    model: WorldModel
    autoencoder: Autoencoder
    config: WorldConfig
    path: str
    step: int
    compute: dict[str, float]  # training FLOPs and wall seconds recorded up to this step ({} if unknown)


def _load_weights(module: nn.Module, weights: dict[str, torch.Tensor], *, what: str, source: str) -> None:
    """load_state_dict with worldsim's errors: which weights are missing, unexpected,
    of the wrong shape or not finite."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(own)} {what} weights missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape than the recorded config builds (e.g. {shapes[:3]})")
        raise CheckpointError(f"{source}: its {what} weights do not fit its config: " + "; ".join(parts)
                              + ". The file is damaged or was edited; use the checkpoint it came from")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} {what} weight tensors hold NaN or inf (e.g. {bad[:3]}); "
                              "the run diverged before this checkpoint: use an earlier one")
    module.load_state_dict(weights)


def load_world(path: str, *, map_location: str = "cpu", ema: bool = True, expect: dict[str, Any] | None = None) -> LoadedWorld:
    """Load a DiT checkpoint (a run directory, a file or an export) with its text
    encoder and frozen autoencoder. ``expect``: config parts that must match (else
    CheckpointError naming the differing keys). EMA weights by default, when the run
    kept them. Everything recorded is validated before anything is built."""
    ckpt = load_checkpoint(path, kind="dit", map_location=map_location)
    source = ckpt["path"]
    config = WorldConfig.from_dict(ckpt["config"], source=source)
    if expect:
        for part, wanted in expect.items():
            require_same((ckpt["config"] or {}).get(part, {}), wanted, what=part, source=source)
    model = WorldModel(config.dit, config.text)
    weights = ckpt["ema"] if ema and ckpt.get("ema") else ckpt["model"]
    _load_weights(model, weights, what="model", source=source)
    ae = Autoencoder(config.ae)
    _load_weights(ae, ckpt.get("autoencoder") or {}, what="autoencoder", source=source)
    return LoadedWorld(model.eval(), ae.eval(), config, source, int(ckpt["step"]), dict(ckpt.get("compute") or {}))


def save_world(
    path: str,
    model: WorldModel,
    autoencoder: Autoencoder,
    *,
    resolution: tuple[int, int],
    fps: int,
    step: int = 0,
    flow: FlowConfig | None = None,
    clip_frames: int = 16,
) -> str:
    """Write a DiT checkpoint that :func:`load_world` reads (what training writes,
    without the optimizer): for exporting and for benchmarks of untrained models."""
    config = WorldConfig(
        dit=model.dit.config, text=model.text.config, ae=autoencoder.config, flow=flow or FlowConfig(),
        data=DataFacts(resolution=list(resolution), fps=fps, clip_frames=clip_frames),
    )
    payload = {"kind": "dit", "step": step, "config": config.to_dict(), "model": model.state_dict(), "ema": {}, "autoencoder": autoencoder.state_dict()}
    return str(save_checkpoint(path, payload))
