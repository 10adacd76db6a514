"""Learned rollouts against the physics (what ``python -m worldsim.compare`` runs).

The episodes are those of a stored split (``data=DIR``: its episodes of the scene and
engine, in index order) or, without ``data``, the same episodes simulated afresh:
episode i is episode i of the stream ``python -m worldsim.generate seed=SEED
split=SPLIT frames=CONTEXT+HORIZON`` would write (its seed is
``episode_seed(SEED, scene, split, i)``, and ``PhysicsWorld-v0`` reset with that seed is
the same world). The physics runs once per episode, if at all; the learned worlds are
handed its first ``context`` frames and the actions that led to them, told the scene
as it is known before anything happens (the detailed caption without its events), and
stepped together (one batched model call) under the episode's actions. Every metric is
computed per step of the horizon for the model and for each baseline
(:data:`worldsim.evaluate.baselines.BASELINES`), objects read off the frames by the same
detector; see :mod:`worldsim.evaluate.report` for the files and the score.
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
from worldsim.data.dataset import select_episodes
from worldsim.data.episode import load_episode
from worldsim.data.generation import simulate_seed
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.evaluate.baselines import BASELINES, BaselineTools, PhysicsEpisode
from worldsim.evaluate.detect import detect_objects, fixture_colours
from worldsim.evaluate.metrics import rollout_metrics
from worldsim.evaluate.report import aggregate, plot_horizon, score, summarize, write_comparison, write_report
from worldsim.models.world import load_world
from worldsim.sim import palette
from worldsim.sim.captions import caption_detailed, static_caption
from worldsim.sim.engines import ENGINES, make_engine
from worldsim.sim.scenes import episode_seed, scene_config
from worldsim.sim.scenes.base import parse_resolution
from worldsim.sim.spec import SceneSpec
from worldsim.simulator import LearnedSimulator


@dataclass
class CompareConfig:
    checkpoint: str | None = None  # a DiT run or checkpoint (default: the bundled reference model)
    checkpoint_b: str | None = None  # a second model to put beside the first
    data: str | None = None  # a generated folder: score its stored episodes of the scene, engine and split (no physics rerun)
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
    sampler_steps: int | None = None  # null: the model's own (flow.sampler_steps)
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


def truth_episodes(cfg: CompareConfig) -> list[PhysicsEpisode]:
    """The ground truth of every paired episode: stored (``cfg.data``) or simulated
    (see the module docstring)."""
    k, frames = cfg.context, cfg.context + cfg.horizon
    out = []
    if cfg.data:
        rows = select_episodes(cfg.data, split=cfg.split, scenes=[cfg.scene], engines=[cfg.engine], min_frames=frames)
        rows = sorted(rows, key=lambda r: r["index"])[: cfg.episodes]
        if len(rows) < cfg.episodes:
            raise ValueError(f"data={cfg.data} holds {len(rows)} {cfg.split} episodes of {cfg.scene} ({cfg.engine}) with {frames}+ frames; "
                             f"{cfg.episodes} asked for: lower episodes, or generate more")
        want = list(parse_resolution(cfg.resolution or 64))
        for r in rows:
            if list(r["resolution"]) != want:
                raise ValueError(f"data={cfg.data}: episode {r['id']} is {r['resolution'][0]}x{r['resolution'][1]}, the model "
                                 f"{want[0]}x{want[1]}; compare needs episodes at the model's resolution")
            ep = load_episode(Path(cfg.data) / r["path"])
            arrays = {key: ep[key][:frames] for key in ("frames", "segmentation", "actions", "positions", "velocities", "angles", "visible_pixels")}
            spec = dataclasses.replace(SceneSpec.from_dict(r["params"]), num_frames=frames)
            out.append(PhysicsEpisode(spec, arrays, r["events"], k, int(r["seed"]), static_caption(r["caption_detailed"])))
        return out
    resolution = parse_resolution(cfg.resolution or 64)
    scene = scene_config(cfg.scene, **cfg.scene_overrides)
    engine = make_engine(cfg.engine)
    for i in range(cfg.episodes):
        seed = episode_seed(cfg.seed, cfg.scene, cfg.split, i)
        spec, arrays, events = simulate_seed(scene, engine, seed, frames=frames, resolution=resolution, split=cfg.split)
        out.append(PhysicsEpisode(spec, arrays, events, k, seed, caption_detailed(spec, [])))
    engine.close()
    return out


def learned_rollouts(checkpoint: str, cfg: CompareConfig, episodes: list[PhysicsEpisode]) -> np.ndarray:
    """Predicted frames (E, H, h, w, 3): the learned worlds, batched, from each episode's
    first ``context`` frames (and the actions that led to them) and its prompt, under the
    episode's actions. World i's sampler noise is seeded as LearnedWorld-v0's is for the
    episode's seed."""
    sampler = SamplerConfig(steps=cfg.sampler_steps, text_scale=cfg.text_scale, action_scale=cfg.action_scale)
    sim = LearnedSimulator(checkpoint, device=cfg.device, precision=cfg.precision, sampler=sampler)
    out = []
    bar = tqdm(total=len(episodes) * cfg.horizon, desc=f"learned rollouts ({cfg.scene})", unit="world-step", file=sys.stderr, leave=False,
               disable=None)  # off when stderr is not a terminal
    for start in range(0, len(episodes), cfg.batch):
        chunk = episodes[start : start + cfg.batch]
        gens = [torch.Generator().manual_seed(int(np.random.default_rng(ep.seed).integers(2**62))) for ep in chunk]
        context = np.stack([ep.arrays["frames"][: cfg.context] for ep in chunk])
        context_actions = np.stack([ep.actions[: cfg.context] for ep in chunk]).astype(np.float32)
        sim.reset(context, [ep.prompt for ep in chunk], gens, context_actions=context_actions)
        frames = []
        for s in range(cfg.horizon):
            frames.append(sim.step(np.stack([ep.actions[cfg.context + s] for ep in chunk]).astype(np.float32)))
            bar.update(len(chunk))
        out.append(np.stack(frames, axis=1))
    bar.close()
    return np.concatenate(out)


def reader_error(episodes: list[PhysicsEpisode]) -> float | None:
    """The detector on true frames against the true positions (px), for objects with
    at least 10 pixels in view: the error the comparison itself carries."""
    errs = []
    for ep in episodes:
        colours = np.array([palette.rgb(o.colour) for o in ep.spec.objects])
        d = detect_objects(ep.arrays["frames"], colours, min_pixels=10, others=fixture_colours(ep.spec.fixtures))
        whole = [i for i, o in enumerate(ep.spec.objects) if o.shape != "pane"]
        ok = d["present"][:, whole] & (ep.arrays["visible_pixels"][:, whole] >= 10)
        e = np.linalg.norm(d["centroids"][:, whole] - ep.arrays["positions"][:, whole], axis=-1)
        errs.append(e[ok])
    all_errs = np.concatenate(errs) if errs else np.zeros(0)
    return round(float(all_errs.mean()), 4) if len(all_errs) else None  # nothing in view to measure: undefined, not perfect


def metrics_of(ep: PhysicsEpisode, pred: np.ndarray) -> dict[str, Any]:
    colours = np.array([palette.rgb(o.colour) for o in ep.spec.objects])
    names = [o.name for o in ep.spec.objects]
    pane = next((i for i, o in enumerate(ep.spec.objects) if o.shape == "pane"), None)
    return rollout_metrics(
        ep.truth, pred, colours, prev_truth=ep.last_context_frame, names=names, agent=ep.spec.agent_index, pane=pane,
        truth_events=ep.events, context=ep.context, pane_colour=palette.rgb(palette.PANE_COLOUR[0]) if pane is not None else None,
        others=fixture_colours(ep.spec.fixtures),
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
    episodes = truth_episodes(cfg)
    preds = {"model": learned_rollouts(checkpoint, cfg, episodes)}
    if cfg.checkpoint_b:
        preds["model_b"] = learned_rollouts(cfg.checkpoint_b, cfg, episodes)
    tools = BaselineTools(make_engine(cfg.engine), make_engine(next(e for e in ENGINES if e != cfg.engine)), world.autoencoder)
    base_frames: dict[str, list[np.ndarray]] = {b: [] for b in cfg.baselines}
    for ep in episodes:
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
        row = {"episode": i, "seed": ep.seed, "scene": ep.spec.scene, "prompt": ep.prompt, "events": ep.events}  # the prompt the model had
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
    write_comparison(out / "compare.mp4", [f"{cfg.scene} #{i}" for i in range(n)], [ep.truth for ep in episodes[:n]],
                     [preds["model"][i] for i in range(n)], fps=episodes[0].spec.physics.fps)
    return result
