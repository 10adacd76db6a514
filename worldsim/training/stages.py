"""Training stages: what each trains and how its loss is computed.

:func:`worldsim.training.loop.train` runs the loop (:func:`~worldsim.training.loop.make_stage`
picks the stage); a stage supplies the rest
(:class:`Stage`): the module, the loss, samples for TensorBoard, and the config that
goes into checkpoints (and must match on resume or load). Each stage reads a typed
config of its own (:class:`AutoencoderStageConfig`, :class:`DiTStageConfig`) made from
the run's settings; unknown keys are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from worldsim.config import typed
from worldsim.diffusion.flow import FlowConfig
from worldsim.models.autoencoder import AutoencoderConfig
from worldsim.models.dit import DiTConfig
from worldsim.models.text import TextConfig


class Stage(Protocol):
    kind: str
    clip_frames: int
    resolution: tuple[int, int] | None

    def build(self) -> nn.Module: ...
    def step_kind(self, gen: torch.Generator) -> str: ...
    def loss(self, module: nn.Module, batch: dict[str, Any], gen: torch.Generator, kind: str) -> tuple[torch.Tensor, dict[str, float]]: ...
    def prepare_data(self, dataset: Any, buckets: list[dict[str, Any]]) -> Any: ...
    def log_samples(self, writer: Any, step: int, module: nn.Module, batch: dict[str, Any], device: torch.device, precision: str) -> None: ...
    def before_checkpoint(self, module: nn.Module, ema: nn.Module | None, dataset: Any, device: torch.device, precision: str) -> None: ...
    def checkpoint_config(self) -> dict[str, Any]: ...
    def checkpoint_extra(self) -> dict[str, Any]: ...
    def check_resume(self, state: dict[str, Any]) -> None: ...


@dataclass
class AutoencoderStageConfig:
    """What ``stage=autoencoder`` reads: the architecture (conf/ae/) and the loss."""

    ae: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    object_weight: float = 8.0  # loss weight of object pixels relative to the background

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AutoencoderStageConfig":
        return cls(ae=typed(AutoencoderConfig, options.get("ae"), "ae"), object_weight=float(options.get("object_weight", 8.0)))


@dataclass
class DiTStageConfig:
    """What ``stage=dit`` reads: the frozen autoencoder, the DiT (conf/model/; its
    latent channels and text width come from the autoencoder and the text encoder),
    the caption encoder and the flow's training distribution."""

    autoencoder: str = "identity"  # a trained autoencoder run or checkpoint, or identity (pixel space)
    model: dict[str, Any] = field(default_factory=dict)
    text: TextConfig = field(default_factory=TextConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "DiTStageConfig":
        model = options.get("model") or {}
        if not isinstance(model, dict):
            raise ValueError(f"model must be a mapping of DiT settings (conf/model/), got {model!r}")
        text = typed(TextConfig, options.get("text"), "text")
        # The DiT's own checks now (its latent channels come from the autoencoder later): a bad
        # model.* value is refused before any data is generated or an autoencoder trained.
        dit = typed(DiTConfig, {**model, "latent_channels": 3, "text_dim": text.dim}, "model")
        flow = typed(FlowConfig, options.get("flow"), "flow")
        if dit.warp and flow.prediction != "sample":
            raise ValueError("model.warp predicts an anchored frame as its anchor moved: it needs flow.prediction=sample (the clean difference)")
        if flow.motion_weight > 0 and not dit.warp:
            raise ValueError("flow.motion_weight trains the flow of model.warp: set model.warp=true (or flow.motion_weight=0)")
        if flow.simulator_share > 0 and dit.patch[0] != 1:
            raise ValueError(f"flow.simulator_share > 0 trains frame by frame: it needs model.patch[0] = 1, got {dit.patch}")
        return cls(autoencoder=str(options.get("autoencoder", "identity")), model=dict(model), text=text, flow=flow)

