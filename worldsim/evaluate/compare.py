"""Learned rollouts against the physics (what ``python -m worldsim.compare`` runs).

Episode i (seed ``seed + i``) is the world ``PhysicsWorld-v0`` starts from with that
seed: the physics runs ``context - 1`` steps with no command (the learned world's
context, and its prompt the scene's description), then ``horizon`` steps under the
scene's actions, which the learned worlds receive too (all of them stepped together,
one batched model call). The physics runs once per episode; the learned worlds are
handed its first frames. Every metric is computed per step of the horizon for the
model and for each baseline (:data:`worldsim.evaluate.baselines.BASELINES`), objects
read off the frames by the same detector; see :mod:`worldsim.evaluate.report` for
the files and the score.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from worldsim.checkpoint import world_checkpoint
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.evaluate.baselines import BASELINES, BaselineTools, PhysicsEpisode
from worldsim.evaluate.detect import detect_objects
from worldsim.evaluate.metrics import rollout_metrics
from worldsim.evaluate.report import aggregate, plot_horizon, score, summarize, write_report, write_video
from worldsim.models.world import load_world
from worldsim.sim import palette
from worldsim.sim.captions import caption_detailed
from worldsim.sim.engines import ENGINES, make_engine
from worldsim.sim.scenes import scene_config
from worldsim.sim.scenes.base import parse_resolution
from worldsim.sim.simulate import simulate
from worldsim.simulator import LearnedSimulator

# The length a world's spec is drawn for (what PhysicsWorld-v0 draws it for): a spec
# depends on it (the occlusion scene times its screens by it), so the same seed gives
# the same world only with the same length.
SPEC_FRAMES = 1001


@dataclass
class CompareConfig:
    checkpoint: str | None = None  # a DiT run or checkpoint (default: the bundled reference model)
    checkpoint_b: str | None = None  # a second model to put beside the first
    scene: str = "bouncing_balls"
    engine: str = "pybullet"
    scene_overrides: dict[str, Any] = field(default_factory=dict)  # ranges of the scene config that differ from its defaults
    episodes: int = 16
    horizon: int = 32
    context: int = 4
    seed: int = 0
    split: str = "test"
    out: str = "compare"
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    sampler_steps: int = 4
    text_scale: float = 1.0
    action_scale: float = 1.0
    batch: int = 16  # learned worlds stepped together
    videos: int = 4  # episodes in compare.mp4
    device: str = "auto"
    precision: str = "auto"
    resolution: str | None = None  # HxW of the physics frames (None: the model's)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; valid engines: {', '.join(ENGINES)}")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baselines {bad}; valid: {list(BASELINES)}")
        if self.episodes < 1 or self.horizon < 1 or self.context < 1:
            raise ValueError("episodes, horizon and context must be at least 1")


def physics_episode(cfg: CompareConfig, seed: int) -> PhysicsEpisode:
    """The ground truth of one paired episode (the world PhysicsWorld-v0 resets to with ``seed``)."""
    resolution = parse_resolution(cfg.resolution or 64)
    scene = scene_config(cfg.scene, **cfg.scene_overrides)
    spec = scene.sample(np.random.default_rng(seed), num_frames=SPEC_FRAMES, resolution=resolution, split=cfg.split)
    spec = dataclasses.replace(spec, num_frames=cfg.context + cfg.horizon, labels=dict(spec.labels))
    prompt = caption_detailed(spec, [])  # before the action source adds the agent's policy to the labels
    rng = np.random.default_rng([seed, 1])
    source = scene.action_source(spec, rng)
    k = cfg.context
    if callable(source):
        policy = source

        def actions(t: int, state: dict[str, np.ndarray]) -> np.ndarray:  # no command during the context
            return np.zeros(2, np.float32) if t < k else policy(t - k + 1, state)

        acts: Any = actions
    elif source is None:
        acts = None
    else:
        acts = np.zeros((spec.num_frames, 2), np.float32)
        acts[k:] = source[1 : cfg.horizon + 1]
    engine = make_engine(cfg.engine)
    arrays, events = simulate(spec, engine, acts)
    engine.close()
    return PhysicsEpisode(spec, arrays, events, k, seed, prompt)


def learned_rollouts(checkpoint: str, cfg: CompareConfig, episodes: list[PhysicsEpisode]) -> np.ndarray:
    """Predicted frames (E, H, h, w, 3): the learned worlds, batched, from each episode's
    first ``context`` frames and the scene's description, under the physics' actions.
    World i's sampler noise is seeded as LearnedWorld-v0's is for the episode's seed."""
    sampler = SamplerConfig(steps=cfg.sampler_steps, text_scale=cfg.text_scale, action_scale=cfg.action_scale)
    sim = LearnedSimulator(checkpoint, device=cfg.device, precision=cfg.precision, sampler=sampler)
    out = []
    for start in tqdm(range(0, len(episodes), cfg.batch), desc="learned rollouts", file=sys.stderr, leave=False):
        chunk = episodes[start : start + cfg.batch]
        gens = [torch.Generator().manual_seed(int(np.random.default_rng(ep.seed).integers(2**62))) for ep in chunk]
        context = np.stack([ep.arrays["frames"][: cfg.context] for ep in chunk])
        sim.reset(context, [ep.prompt for ep in chunk], gens)
        frames = [sim.step(np.stack([ep.actions[cfg.context + s] for ep in chunk]).astype(np.float32)) for s in range(cfg.horizon)]
        out.append(np.stack(frames, axis=1))
    return np.concatenate(out)


def reader_error(episodes: list[PhysicsEpisode]) -> float:
    """The detector on true frames against the true positions (px), for objects with
    at least 10 pixels in view: the error the comparison itself carries."""
    errs = []
    for ep in episodes:
        colours = np.array([palette.rgb(o.colour) for o in ep.spec.objects])
        d = detect_objects(ep.arrays["frames"], colours, min_pixels=10)
        whole = [i for i, o in enumerate(ep.spec.objects) if o.shape != "pane"]
        ok = d["present"][:, whole] & (ep.arrays["visible_pixels"][:, whole] >= 10)
        e = np.linalg.norm(d["centroids"][:, whole] - ep.arrays["positions"][:, whole], axis=-1)
        errs.append(e[ok])
    all_errs = np.concatenate(errs) if errs else np.zeros(0)
    return round(float(all_errs.mean()), 4) if len(all_errs) else 0.0


def metrics_of(ep: PhysicsEpisode, pred: np.ndarray) -> dict[str, Any]:
    colours = np.array([palette.rgb(o.colour) for o in ep.spec.objects])
    names = [o.name for o in ep.spec.objects]
    pane = next((i for i, o in enumerate(ep.spec.objects) if o.shape == "pane"), None)
    return rollout_metrics(
        ep.truth, pred, colours, prev_truth=ep.last_context_frame, names=names, agent=ep.spec.agent_index, pane=pane,
        truth_events=ep.events, context=ep.context, pane_colour=palette.rgb(palette.PANE_COLOUR[0]) if pane is not None else None,
    )


def run_compare(cfg: CompareConfig, *, keep: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Everything ``python -m worldsim.compare`` does; returns metrics.json's content.
    ``keep``, if given, receives the ``truth`` and ``model`` frames (and each
    baseline's) of the first ``cfg.videos`` episodes."""
    checkpoint = world_checkpoint(cfg.checkpoint)
    world = load_world(checkpoint)
    h, w = world.config.data.resolution
    cfg = dataclasses.replace(cfg, resolution=f"{h}x{w}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    episodes = [physics_episode(cfg, s) for s in tqdm(seeds, desc="physics", file=sys.stderr, leave=False)]
    preds = {"model": learned_rollouts(checkpoint, cfg, episodes)}
    if cfg.checkpoint_b:
        preds["model_b"] = learned_rollouts(cfg.checkpoint_b, cfg, episodes)
    tools = BaselineTools(make_engine(cfg.engine), make_engine(next(e for e in ENGINES if e != cfg.engine)), world.autoencoder)
    base_frames: dict[str, list[np.ndarray]] = {b: [] for b in cfg.baselines}
    for ep in tqdm(episodes, desc="baselines", file=sys.stderr, leave=False):
        for b in cfg.baselines:
            base_frames[b].append(BASELINES[b](ep, tools))
    tools.engine.close()
    tools.other.close()
    per_source: dict[str, list[dict[str, Any]]] = {}
    for name, frames in [*preds.items(), *base_frames.items()]:
        per_source[name] = [metrics_of(ep, np.asarray(f)) for ep, f in zip(episodes, frames)]
    curves = {name: aggregate(rows, cfg.horizon) for name, rows in per_source.items()}
    baseline_curves = {b: curves[b] for b in cfg.baselines}
    result: dict[str, Any] = {
        "config": {**dataclasses.asdict(cfg), "checkpoint": str(checkpoint), "resolution": [h, w]},
        "reader_error_px": reader_error(episodes),
        "model": curves["model"],
        "baselines": baseline_curves,
        "summary": {"model": summarize(curves["model"]), "baselines": {b: summarize(c) for b, c in baseline_curves.items()}},
    }
    if "model_b" in curves:
        result["model_b"] = curves["model_b"]
        result["summary"]["model_b"] = summarize(curves["model_b"])
    if "physical_variance" in curves:
        result["scores"] = {
            name: score(curves[name], curves["physical_variance"]) for name in curves if name != "physical_variance"
        }
    rows = []
    for i, ep in enumerate(episodes):
        row = {"episode": i, "seed": ep.seed, "caption": ep.spec.scene, "events": ep.events}
        for name, ms in per_source.items():
            row[name] = {k: (float(np.nanmean(v)) if isinstance(v, np.ndarray) and np.isfinite(v).any() else (None if isinstance(v, np.ndarray) else v)) for k, v in ms[i].items()}
        rows.append(row)
    write_report(out, result, episodes=rows)
    plot_horizon(out / "horizon.png", {n: c for n, c in curves.items()}, title=f"{cfg.scene} ({cfg.engine}), {cfg.episodes} episodes")
    n = min(cfg.videos, len(episodes))
    if keep is not None:
        keep["truth"] = [ep.truth for ep in episodes[:n]]
        keep["model"] = [preds["model"][i] for i in range(n)]
        for b, fs in base_frames.items():
            keep[b] = [np.asarray(f) for f in fs[:n]]
    write_video(out / "compare.mp4", [ep.truth for ep in episodes[:n]], [preds["model"][i] for i in range(n)], fps=episodes[0].spec.physics.fps)
    return result
