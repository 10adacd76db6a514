"""A trained world model as a video generator: the Sora-style modes of
``python -m worldsim.sample``.

Every mode is a choice of which frames are given (the model saw all of these in
training, with bidirectional attention):

===================  =====================================================================
``t2v``              no frames given: a clip from the prompt alone
``i2v``              the first frame given (an image, or a clip's first frame)
``extend``           the input clip's last frames given at the start: what comes next
``extend_backward``  the input clip's first frames given at the end: what came before
``connect``          two inputs: the end of the first at the start, the start of the
                     second at the end, frames in between generated
``loop``             the first frame given at both ends: the clip leads back into itself
``edit``             SDEdit: the input clip noised part-way (``strength``) and
                     denoised under the prompt; nothing kept exactly
===================  =====================================================================

``frames`` is the length of the output; given frames sit in it unchanged. Short
prompts are expanded into the detailed captions the model was trained on
(:mod:`worldsim.sim.prompts`); unknown words are reported. ``input`` accepts an
episode ``.npz``, a video file or an image. Writes ``DIR/sample.npz`` (``frames
(N, H, W, 3) uint8`` and the prompt), ``DIR/sample.mp4`` (with ``sample.gif`` and a
contact sheet ``sample.png``) and ``DIR/sample.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from worldsim.atomic import atomic_path, atomic_write_text
from worldsim.checkpoint import world_checkpoint
from worldsim.data.episode import load_episode
from worldsim.diffusion.flow import velocity_from
from worldsim.diffusion.sampling import SamplerConfig, sample
from worldsim.frames import to_model, to_uint8
from worldsim.models.world import load_world
from worldsim.runtime import autocast, resolve_device, resolve_precision
from worldsim.sim.prompts import expand_prompt
from worldsim.sim.scenes.base import parse_resolution
from worldsim.video import write_labelled

log = logging.getLogger("worldsim.sample")

MODES = ("t2v", "i2v", "extend", "extend_backward", "connect", "loop", "edit")
INPUTS_NEEDED = {"i2v": 1, "extend": 1, "extend_backward": 1, "connect": 2, "edit": 1}


class SampleError(ValueError):
    """A sampling request that cannot work; the message says how to fix it."""


def read_frames(path: str | Path, *, resolution: tuple[int, int] | None = None) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 from an episode .npz, a video or an image, resized
    (nearest) to ``resolution`` if given."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"no input file at {path}")
    if path.suffix == ".npz":
        frames = load_episode(path)["frames"]
    else:
        try:
            video = path.suffix.lower() in (".mp4", ".gif", ".avi", ".mov", ".webm", ".mkv")
            frames = iio.imread(path, index=None) if video else iio.imread(path, plugin="pillow")
        except Exception as e:
            raise SampleError(f"{path}: not a readable episode, video or image ({e})") from e
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        frames = frames[..., :3].astype(np.uint8)
    if resolution is not None and frames.shape[1:3] != tuple(resolution):
        h, w = resolution
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.NEAREST)) for f in frames])
    return frames


def valid_sizes(h: int, w: int, multiple: tuple[int, int]) -> str:
    mh, mw = multiple
    cands = {(max(mh, round(h / mh) * mh), max(mw, round(w / mw) * mw)), (max(mh, h // mh * mh), max(mw, w // mw * mw)), ((h // mh + 1) * mh, (w // mw + 1) * mw)}
    return ", ".join(f"{a}x{b}" for a, b in sorted(cands))


@dataclass
class Sampler:
    """A loaded world model ready to sample clips in every mode."""

    checkpoint: str
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        self._device = resolve_device(self.device)
        self._precision = resolve_precision(self.precision, self._device)
        w = load_world(self.checkpoint)
        self.model, self.ae, self.config = w.model.to(self._device), w.autoencoder.to(self._device), w.config
        f = self.ae.spatial_factor
        _, ph, pw = self.config.dit.patch
        self.multiple = (f * ph, f * pw)
        self.resolution = tuple(self.config.data.resolution)

    def check_size(self, resolution: tuple[int, int]) -> None:
        h, w = resolution
        mh, mw = self.multiple
        if h % mh or w % mw:
            raise SampleError(
                f"resolution {h}x{w} does not divide into this model's {mh}x{mw} blocks (autoencoder factor times patch); "
                f"nearest valid: {valid_sizes(h, w, self.multiple)}"
            )

    @torch.no_grad()
    def generate(
        self,
        mode: str,
        prompt: str,
        *,
        frames: int = 16,
        resolution: tuple[int, int] | None = None,
        inputs: list[np.ndarray] | None = None,
        context: int = 2,
        strength: float = 0.6,
        seed: int = 0,
        steps: int = 16,
        method: str = "heun",
        text_scale: float = 1.0,
        actions: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Generate ``frames`` frames; returns them (N, H, W, 3) uint8 and the mask of
        the frames that were given (N,) bool (returned exactly as given).

        ``actions`` (N, A) in [-1, 1]: the agent's command at every frame (scenes with
        an agent); None leaves them to the model (the action-unconditional branch it
        learned with actions dropped)."""
        if mode not in MODES:
            raise SampleError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if not 0.0 <= strength <= 1.0:
            raise SampleError(f"strength must be in [0, 1] (0 keeps the input, 1 ignores it), got {strength}")
        res = tuple(resolution or self.resolution)
        self.check_size(res)  # type: ignore[arg-type]
        inputs = inputs or []
        need = INPUTS_NEEDED.get(mode, 0)
        if len(inputs) < need:
            raise SampleError(f"mode {mode} needs {need} input{'s' if need > 1 else ''} ({'input=[PATH,PATH2]' if need > 1 else 'input=PATH'}), got {len(inputs)}")
        if mode == "t2v" and not prompt.strip():
            raise SampleError("mode t2v needs a prompt: describe the scene, e.g. prompt='two bouncy balls, low gravity'")
        if frames < 2:
            raise SampleError(f"frames must be at least 2, got {frames}")
        n = frames
        given = np.zeros(n, bool)
        video = np.zeros((n, *res, 3), np.uint8)
        start = None
        if mode == "i2v":
            video[0], given[0] = inputs[0][0], True
        elif mode == "extend":
            clip = inputs[0][-min(context, n - 1, len(inputs[0])) :]
            video[: len(clip)], given[: len(clip)] = clip, True
        elif mode == "extend_backward":
            clip = inputs[0][: min(context, n - 1, len(inputs[0]))]
            video[n - len(clip) :], given[n - len(clip) :] = clip, True
        elif mode == "connect":
            k = max(1, min(context, (n - 1) // 2))
            a, b = inputs[0][-k:], inputs[1][:k]
            video[: len(a)], given[: len(a)] = a, True
            video[n - len(b) :], given[n - len(b) :] = b, True
        elif mode == "loop":
            if inputs:
                first = inputs[0][0]
            else:  # the first frame from the prompt
                first = self.generate("t2v", prompt, frames=2, resolution=res, seed=seed, steps=steps, method=method, text_scale=text_scale)[0][0]  # type: ignore[arg-type]
            video[0], given[0] = first, True
        elif mode == "edit":
            clip = inputs[0][:n]
            if len(clip) < n:
                clip = np.concatenate([clip, np.repeat(clip[-1:], n - len(clip), 0)])
            video[:] = clip
        dev = self._device
        tensor = to_model(video, dev)[None]  # (1, N, 3, H, W)
        tf = self.ae.temporal_factor
        if (n - 1) % tf:
            raise SampleError(f"this model's autoencoder merges {tf} frames: frames must be 1 + {tf}k, e.g. {1 + tf * ((n - 1) // tf)}")
        with autocast(dev, self._precision):
            latents = self.ae.encode(tensor).float()  # (1, T, C, h, w)
        t_lat = latents.shape[1]
        mask = torch.zeros(1, t_lat, dtype=torch.bool, device=dev)
        if tf == 1:
            mask[0] = torch.from_numpy(given).to(dev)
        else:  # a latent frame is given when all its video frames are
            groups = [given[:1]] + [given[1 + tf * i : 1 + tf * (i + 1)] for i in range(t_lat - 1)]
            mask[0] = torch.tensor([bool(g.all()) for g in groups], device=dev)
        if mode == "loop":  # one more latent frame: the first again, after the last
            latents = torch.cat([latents, latents[:, :1]], dim=1)
            mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.bool, device=dev)], dim=1)
        if mode == "edit":
            start = latents
        text = self.model.encode_text([prompt])
        a_dim = self.model.dit.config.action_dim
        if actions is None:
            acts = torch.zeros(1, n, a_dim, device=dev)
        else:
            a = np.asarray(actions, np.float32)
            if a.shape != (n, a_dim) or not np.isfinite(a).all():
                raise SampleError(f"actions must be a finite ({n}, {a_dim}) array (one command per output frame), got {a.shape}")
            acts = torch.from_numpy(np.clip(a, -1.0, 1.0)).to(dev)[None]
        if tf > 1:  # one action per latent frame: the mean over the video frames it covers
            acts = torch.cat([acts[:, :1], acts[:, 1:].reshape(1, -1, tf, a_dim).mean(2)], 1)
        if mode == "loop":
            acts = torch.cat([acts, acts[:, :1]], 1)
        free = actions is None

        def velocity(x: torch.Tensor, t: torch.Tensor, text_drop: torch.Tensor, action_drop: torch.Tensor) -> torch.Tensor:
            k = x.shape[0]
            tx = tuple(torch.cat([p] * k) for p in text)
            drop = action_drop | free
            out = self.model(x, t, torch.cat([acts] * k), tx, causal=False, text_drop=text_drop, action_drop=drop).float()
            return velocity_from(out, x, t, self.config.flow.prediction)

        cfg = SamplerConfig(method=method, steps=steps, text_scale=text_scale)
        gen = torch.Generator().manual_seed(seed)
        with autocast(dev, self._precision):
            z = sample(
                velocity, tuple(latents.shape), cfg, gen, context=latents, context_mask=mask, device=dev,
                start=start, start_t=strength if mode == "edit" else 1.0,
            )
            if mode == "loop":
                z = z[:, :-1]
            out = self.ae.decode(z)[0]
        frames_out = to_uint8(out)
        frames_out[given] = video[given]  # given frames, exactly as given
        return frames_out, given


@dataclass
class SampleConfig:
    checkpoint: str | None = None
    mode: str = "t2v"
    prompt: str = ""
    input: Any = None  # a path, or a list of two paths for connect ("a.npz,b.npz" works too)
    frames: int = 16
    resolution: Any = None  # HxW (null: the model's)
    seed: int = 0
    out: str = "sample"
    context: int = 2  # frames given by extend, extend_backward and connect (per side)
    strength: float = 0.6  # edit: how far the input is noised (0 keeps it, 1 ignores it)
    steps: int = 16
    method: str = "heun"
    text_scale: float = 1.0
    prompt_scene: str | None = None  # the scene a short prompt is expanded in (null: the one it suggests)
    expand: bool = True  # expand short prompts into detailed captions
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Everything that can be checked without the model, so a typo costs no loading."""
        if self.mode not in MODES:
            raise SampleError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        need = INPUTS_NEEDED.get(self.mode, 0)
        if len(self.inputs) < need:
            raise SampleError(f"mode {self.mode} needs {need} input{'s' if need > 1 else ''} "
                              f"({'input=[PATH,PATH2]' if need > 1 else 'input=PATH'}), got {len(self.inputs)}")
        for path in self.inputs:
            if not Path(path).is_file():
                raise SampleError(f"no input file at {path} (input= takes an episode .npz, a video or an image)")
        if self.mode == "t2v" and not self.prompt.strip():
            raise SampleError("mode t2v needs a prompt: describe the scene, e.g. prompt='two bouncy balls, low gravity'")
        if self.frames < 2:
            raise SampleError(f"frames must be at least 2, got {self.frames}")
        if not 0.0 <= self.strength <= 1.0:
            raise SampleError(f"strength must be in [0, 1] (0 keeps the input, 1 ignores it), got {self.strength}")
        if self.steps < 1 or self.context < 1:
            raise SampleError(f"steps and context must be at least 1, got steps={self.steps} context={self.context}")
        if self.method not in ("euler", "heun"):
            raise SampleError(f"method must be euler or heun, got {self.method!r}")
        if self.resolution is not None:
            parse_resolution(self.resolution)
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise SampleError(f"out={out} is a file, not a folder; pass a folder to write sample.npz, sample.mp4 and sample.json into")

    @property
    def inputs(self) -> list[str]:
        """The input paths: a list, or one string (``a.npz,b.npz`` for two)."""
        if isinstance(self.input, (list, tuple)):
            return [str(p) for p in self.input]
        return [] if self.input in (None, "") else str(self.input).split(",")


def run_sample(cfg: SampleConfig) -> dict[str, Any]:
    """Everything ``python -m worldsim.sample`` does; returns what it wrote."""
    checkpoint = world_checkpoint(cfg.checkpoint)
    sampler = Sampler(checkpoint, device=cfg.device, precision=cfg.precision)
    res = parse_resolution(cfg.resolution) if cfg.resolution else sampler.resolution
    sampler.check_size(res)  # type: ignore[arg-type]
    inputs = [read_frames(p, resolution=res) for p in cfg.inputs]  # type: ignore[arg-type]
    prompt, unknown = cfg.prompt, []
    if cfg.prompt.strip() and cfg.expand:
        e = expand_prompt(cfg.prompt, seed=cfg.seed, scene=cfg.prompt_scene, resolution=res)  # type: ignore[arg-type]
        prompt, unknown = e.caption, e.unknown
        if unknown:
            log.warning("unknown words in the prompt, not used: %s", ", ".join(unknown))
    frames, given = sampler.generate(
        cfg.mode, prompt, frames=cfg.frames, resolution=res, inputs=inputs, context=cfg.context, strength=cfg.strength,  # type: ignore[arg-type]
        seed=cfg.seed, steps=cfg.steps, method=cfg.method, text_scale=cfg.text_scale,
    )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "sample.npz", keep_suffix=True) as tmp:
        np.savez_compressed(tmp, frames=frames, given=given, prompt=np.array(cfg.prompt), caption=np.array(prompt))
    columns = [f"{cfg.mode}: given" if given.all() else cfg.mode]
    write_labelled(out / "sample", [(f"seed {cfg.seed}", [frames])], columns, fps=int(sampler.config.data.fps), first_step=0)
    info = {"mode": cfg.mode, "prompt": cfg.prompt, "caption": prompt, "unknown_words": unknown, "frames": list(frames.shape), "given": given.tolist()}
    atomic_write_text(out / "sample.json", json.dumps(info, indent=1))
    return info
