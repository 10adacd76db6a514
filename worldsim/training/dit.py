"""The DiT stage: train the text encoder and the diffusion transformer in the latent
space of a frozen autoencoder (``autoencoder=RUN`` or ``autoencoder=identity``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from worldsim.checkpoint import require_same
from worldsim.config import typed
from worldsim.data.latents import build_latent_cache
from worldsim.diffusion.flow import (
    flow_loss,
    motion_loss,
    object_motion,
    object_weights,
    simulator_inputs,
    still_background,
    training_inputs,
    velocity_from,
)
from worldsim.diffusion.sampling import SamplerConfig, sample, time_grid
from worldsim.frames import to_uint8
from worldsim.models.autoencoder import load_autoencoder
from worldsim.models.dit import DiTConfig
from worldsim.models.world import DataFacts, WorldConfig, WorldModel
from worldsim.runtime import autocast, resolve_device, resolve_precision
from worldsim.sim.captions import static_caption
from worldsim.training.stages import DiTStageConfig
from worldsim.video import image_grid

log = logging.getLogger("worldsim.training")


class DiTStage:
    kind = "dit"

    def __init__(self, cfg: Any, options: DiTStageConfig):
        self.cfg = cfg
        self.autoencoder_source = options.autoencoder
        self.ae = load_autoencoder(self.autoencoder_source)
        for p in self.ae.parameters():
            p.requires_grad_(False)
        self.text_config = options.text
        model = {**options.model, "latent_channels": self.ae.latent_channels, "text_dim": self.text_config.dim}
        self.dit_config = typed(DiTConfig, model, "model")
        self.flow = options.flow
        self.target = "target" if self.flow.prediction == "velocity" else "target_sample"
        tf = self.ae.temporal_factor
        if self.flow.motion_weight > 0 and tf != 1:
            raise ValueError(f"flow.motion_weight needs an autoencoder of temporal factor 1 (a latent frame per frame), got {tf}")
        if (cfg.clip_frames - 1) % tf:
            raise ValueError(f"clip_frames must be 1 + {tf}n for an autoencoder of temporal factor {tf}, got {cfg.clip_frames}")
        self.clip_frames = cfg.clip_frames
        self.resolution = tuple(cfg.resolution) if cfg.resolution else None
        self._device: torch.device | None = None

    # -- shape of the run ---------------------------------------------------------------------------
    def build(self) -> nn.Module:
        return WorldModel(self.dit_config, self.text_config)

    def checkpoint_config(self) -> dict[str, Any]:
        return WorldConfig(
            dit=self.dit_config, text=self.text_config, ae=self.ae.config, flow=self.flow, autoencoder_source=self.autoencoder_source,
            data=DataFacts(resolution=list(self.data_resolution), fps=self.fps, clip_frames=self.clip_frames, buckets=self.buckets),
        ).to_dict()

    def check_resume(self, state: dict[str, Any]) -> None:
        kinds = (("dit", DiTConfig, self.dit_config.to_dict()), ("text", type(self.text_config), dataclasses.asdict(self.text_config)),
                 ("ae", type(self.ae.config), dataclasses.asdict(self.ae.config)))
        for part, kind, mine in kinds:
            # a setting added after the checkpoint was written is what it was trained with: its default
            saved = {**dataclasses.asdict(kind()), **state["config"][part]}
            require_same(saved, mine, what=part, source=state["path"])
        if "flow" in state["config"]:  # the objective: the noise levels, the tasks' shares, the losses
            mine = dataclasses.asdict(self.flow)
            saved = {**dataclasses.asdict(type(self.flow)()), **{k: v for k, v in state["config"]["flow"].items() if k in mine}}
            def unrolled_with_sampler_steps(flow: dict[str, Any]) -> bool:
                return bool(flow.get("unroll")) and flow.get("unroll_steps") is None

            if not unrolled_with_sampler_steps(saved) and not unrolled_with_sampler_steps(mine):
                saved["sampler_steps"] = mine["sampler_steps"]  # only sampling reads it then: a finished run may change it
            if not saved.get("unroll") and not mine["unroll"]:
                saved["unroll_steps"] = mine["unroll_steps"]  # read by unrolled passes alone
            require_same(saved, mine, what="flow", source=state["path"])
        trained = state.get("autoencoder") or {}
        mine_ae = self.ae.state_dict()
        if trained and (trained.keys() != mine_ae.keys() or any(not torch.equal(trained[k].to(v.device), v) for k, v in mine_ae.items())):
            # the frozen autoencoder the run began with, not the source's newest weights (trained further since?)
            log.warning("%s: the autoencoder at %s is not the one this run began with; resuming with the weights saved in the "
                        "checkpoint", state["path"], self.autoencoder_source)
            self.ae.load_state_dict(trained)

    def prepare_data(self, dataset: Any, buckets: list[dict[str, Any]], *, cache: bool = True) -> Any:
        """Check the buckets against the autoencoder and patch; with cache_latents, the
        cached-latent dataset to train on (None: ``dataset`` itself)."""
        f, tf = self.ae.spatial_factor, self.ae.temporal_factor
        pt, ph, pw = self.dit_config.patch
        for b in buckets:
            h, w = b["resolution"]
            if h % (f * ph) or w % (f * pw):
                raise ValueError(
                    f"frames of {h}x{w} do not divide into the autoencoder's factor {f} times the patch {ph}x{pw}: "
                    f"height and width must be multiples of {f * ph} and {f * pw}"
                )
            if (b["frames"] - 1) % tf or ((b["frames"] - 1) // tf + 1) % pt:
                raise ValueError(f"a bucket of {b['frames']} frames does not make whole latent frames and temporal patches")
        self.data_resolution = tuple(buckets[0]["resolution"])
        self.buckets = buckets
        self.fps = int(dataset.episodes[0]["fps"])
        self.dataset = dataset
        if cache and getattr(self.cfg, "cache_latents", False):
            device = resolve_device(self.cfg.device)
            self.ae.to(device)
            return build_latent_cache(dataset, self.ae, Path(self.cfg.out) / "latents", device=device,
                                      precision=resolve_precision(self.cfg.precision, device))
        return None

    # -- training -------------------------------------------------------------------------------------
    def latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Clean latents of a batch of clips (B, T, 3, H, W), with the frozen autoencoder."""
        self.ae.to(frames.device)
        with torch.no_grad():
            return self.ae.encode(frames).float()

    def latent_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions per latent frame: the first frame's, then the mean of each group."""
        tf = self.ae.temporal_factor
        if tf == 1:
            return actions
        rest = rearrange(actions[:, 1:], "b (t k) a -> b t k a", k=tf).mean(2)  # (B, T'-1, A)
        return torch.cat([actions[:, :1], rest], 1)

    def captions(self, captions: list[str], gen: torch.Generator) -> list[str]:
        """The captions to train on: each loses its events with flow.events_drop."""
        drop = torch.rand(len(captions), generator=gen) < self.flow.events_drop
        return [static_caption(c) if d else c for c, d in zip(captions, drop.tolist())]

    def step_kind(self, gen: torch.Generator) -> str:
        """What a training step trains: ``simulator`` (the simulator's own task) or
        ``sequence`` (the Sora modes); drawn first, from the step's generator."""
        share = self.flow.simulator_share
        if share <= 0.0 or share >= 1.0:  # no draw: runs without the simulator's task keep their random stream
            return "simulator" if share >= 1.0 else "sequence"
        return "simulator" if bool(torch.rand(1, generator=gen) < share) else "sequence"

    def loss(self, module: nn.Module, batch: dict[str, Any], gen: torch.Generator, kind: str | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        kind = kind or self.step_kind(gen)
        x0 = batch["latents"] if "latents" in batch else self.latents(batch["frames"])  # (B, T', C, h, w)
        acts = self.latent_actions(batch["actions"])  # (B, T', A)
        weight = None
        if self.flow.object_weight > 1.0:
            weight = object_weights(batch["objects"], tuple(x0.shape[-2:]), self.flow.object_weight)  # (B, T', 1, h, w)
        captions = self.captions(list(batch["caption_detailed"]), gen)
        if kind == "simulator":
            history = self.own_history(module, x0, acts, captions, gen) if self.flow.unroll else None
            inp = simulator_inputs(x0, self.flow, gen, anchor=self.dit_config.anchor, history=history, anchor_frames=self.dit_config.anchor_frames)
            idx = inp["frame_index"]  # (2(T'-1),) the clip frame of each frame of the sequence
            motion = self.flow.motion_weight > 0
            v = module(
                inp["x_t"], inp["t"], acts[:, idx], captions, causal=True, text_drop=inp["text_drop"], action_drop=inp["action_drop"],
                anchor=inp["anchor"], anchored=inp["anchored"], anchor_t=inp["anchor_t"], anchor_base=inp["anchor_base"], frame_index=idx,
                frame_mask=inp["frame_mask"], **({"return_flow": True} if motion else {}),
            )
            v, flow = v if motion else (v, None)
            loss = flow_loss(v, inp[self.target], inp["context"], None if weight is None else weight[:, idx])
            logs = {"simulator": 1.0, "causal": 1.0}
            if motion:  # the flow where objects are, against how they moved (target frames only: their anchors are the frames before)
                seg = torch.where(batch["objects"], batch["segmentation"], 0).to(x0.device)  # objects only (fixtures and background: 0)
                truth, where = object_motion(seg, tuple(x0.shape[-2:]), max(int(seg.max()), 1))
                target = (~inp["context"])[:, :, None, None, None]
                aux = motion_loss(flow, truth[:, idx], where[:, idx] & target)
                if self.flow.motion_background:  # zero where the still background shows (id 0 in this frame and the one before)
                    still = still_background(batch["segmentation"].to(x0.device) == 0, tuple(x0.shape[-2:]))[:, idx] & target
                    aux = aux + motion_loss(flow, torch.zeros_like(flow), still)
                loss = loss + self.flow.motion_weight * aux
                logs["motion_loss"] = float(aux.detach())
            return loss, logs
        inp = training_inputs(x0, self.flow, gen)
        v = module(inp["x_t"], inp["t"], acts, captions, causal=inp["causal"], text_drop=inp["text_drop"], action_drop=inp["action_drop"])
        loss = flow_loss(v, inp[self.target], inp["context"], weight)
        return loss, {"simulator": 0.0, "causal": float(inp["causal"])}

    @torch.no_grad()
    def own_history(self, module: nn.Module, x0: torch.Tensor, acts: torch.Tensor, captions: list[str], gen: torch.Generator) -> torch.Tensor:
        """History frames (B, T'-1, C, h, w) for the simulator's task in which frames 1 ..
        T'-2 are the model's own predictions, each sampled from noise as a rollout samples
        it (``flow.unroll_steps`` Euler steps on the sampler's grid; null: the model's own
        ``flow.sampler_steps``), ``flow.unroll`` times over (each pass predicts from the
        last one's history, so errors compound as in a rollout), for a share
        ``flow.unroll_fraction`` of the clips; the others keep the true frames."""
        b, n = x0.shape[0], x0.shape[1] - 1
        own = torch.rand(b, generator=gen) < self.flow.unroll_fraction
        steps = self.flow.unroll_steps or self.flow.sampler_steps
        grid = time_grid(steps, device=x0.device)
        history = x0[:, :-1]
        for _ in range(self.flow.unroll):
            inp = simulator_inputs(x0, self.flow, gen, anchor=self.dit_config.anchor, history=history, level=1.0,
                                   anchor_frames=self.dit_config.anchor_frames)
            idx = inp["frame_index"]
            hist, tau = inp["x_t"][:, :n], inp["t"][:, :n]
            y = inp["x_t"][:, n:]  # the targets at t = 1: noise
            for i in range(steps):  # every target frame at once: each sees the history before it, as in a KV-cached step
                t_now = torch.full((b, n), float(grid[i]), device=x0.device)
                t = torch.cat([tau, t_now], 1)
                v = module(
                    torch.cat([hist, y], 1), t, acts[:, idx], captions, causal=True, anchor=inp["anchor"], anchored=inp["anchored"],
                    anchor_t=inp["anchor_t"], anchor_base=inp["anchor_base"], frame_index=idx, frame_mask=inp["frame_mask"],
                )
                y = y + (grid[i + 1] - grid[i]) * velocity_from(v[:, n:].float(), y, t_now, self.flow.prediction)
            pred = inp["base"] + y  # (B, n, C, h, w) frames 1 .. T'-1
            history = torch.cat([x0[:, :1], pred[:, :-1]], 1)
        return torch.where(own.to(x0.device)[:, None, None, None, None], history, x0[:, :-1])

    # -- monitoring ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def log_samples(self, writer: Any, step: int, module: nn.Module, batch: dict[str, Any], device: torch.device, precision: str) -> None:
        module.eval()
        x0 = batch["latents"][:2] if "latents" in batch else self.latents(batch["frames"][:2])
        with autocast(device, precision):
            pred = self.continue_clip(module, x0, batch["actions"][:2], list(batch["caption_detailed"][:2]), context=2, seed=step)
            truth = batch["frames"][:2] if "frames" in batch else self.ae.decode(x0)
        module.train()
        truth, out = to_uint8(truth), to_uint8(pred)
        writer.add_image("samples/truth_above_prediction_context2", image_grid([x for pair in zip(truth, out) for x in pair]), step, dataformats="HWC")

    @torch.no_grad()
    def continue_clip(
        self, model: nn.Module, x0: torch.Tensor, actions: torch.Tensor, captions: list[str], *, context: int, seed: int, steps: int = 8
    ) -> torch.Tensor:
        """Generate a clip (decoded) from the first ``context`` of its latent frames
        ``x0`` (B, T', C, h, w), bidirectionally."""
        mask = torch.zeros(x0.shape[:2], dtype=torch.bool, device=x0.device)
        mask[:, :context] = True
        text = model.encode_text(captions)
        acts = self.latent_actions(actions)

        def velocity(x: torch.Tensor, t: torch.Tensor, text_drop: torch.Tensor, action_drop: torch.Tensor) -> torch.Tensor:
            k = x.shape[0] // x0.shape[0]
            tx = tuple(torch.cat([p] * k) for p in text)
            out = model(x, t, torch.cat([acts] * k), tx, causal=False, text_drop=text_drop, action_drop=action_drop)
            return velocity_from(out, x, t, self.flow.prediction)

        gen = torch.Generator().manual_seed(seed)
        z = sample(velocity, tuple(x0.shape), SamplerConfig(steps=steps), gen, context=x0, context_mask=mask, device=x0.device)
        return self.ae.decode(z)

    def before_checkpoint(self, module: nn.Module, ema: nn.Module | None, dataset: Any, device: torch.device, precision: str) -> None:
        pass

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"autoencoder": self.ae.state_dict()}
