"""Compare learned rollouts with the physics: ``python -m worldsim.compare checkpoint=PATH
scene=S engine=E episodes=N horizon=H context=K seed=SEED out=DIR``.

Episode i (seed ``seed + i``) starts ``PhysicsWorld-v0`` and ``LearnedWorld-v0`` from
the same spec: the physics runs ``context - 1`` steps with no command (the learned
world's context), then ``horizon`` steps under the scene's actions, which the learned
world receives too (all learned worlds step together, one batched model call). Every
metric is computed per step of the horizon for the model and for each baseline
(:mod:`worldsim.evaluate.baselines`), objects read off the frames by the same
detector; see :mod:`worldsim.evaluate.report` for the files and the score.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from worldsim.config import config_dir
from worldsim.evaluate.baselines import BASELINES, PhysicsEpisode
from worldsim.sim.engine import ENGINES

log = logging.getLogger("worldsim.compare")


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
    """The ground truth of one paired episode (the learned world's twin, same seed)."""
    from worldsim.sim.simulate import simulate
    from worldsim_envs.physics_world import PhysicsWorldEnv

    env = PhysicsWorldEnv(cfg.scene, cfg.engine, resolution=cfg.resolution or 64, split=cfg.split, scene_overrides=cfg.scene_overrides)
    env.reset(seed=seed)
    spec = dataclasses.replace(env.spec_, num_frames=cfg.context + cfg.horizon)
    rng = np.random.default_rng([seed, 1])
    source = env.scene.action_source(spec, rng)
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
    arrays, events = simulate(spec, env.engine, acts)
    env.close()
    return PhysicsEpisode(spec, arrays, events, k, seed)


def learned_rollouts(checkpoint: str, cfg: CompareConfig, episodes: list[PhysicsEpisode]) -> np.ndarray:
    """Predicted frames (E, H, h, w, 3): the learned worlds, batched, under the physics' actions."""
    from worldsim_envs.learned_world import LearnedWorldVectorEnv

    out = []
    for start in range(0, len(episodes), cfg.batch):
        chunk = episodes[start : start + cfg.batch]
        venv = LearnedWorldVectorEnv(
            len(chunk), max_episode_steps=None, checkpoint=checkpoint, scene=cfg.scene, engine=cfg.engine, context=cfg.context,
            scene_overrides=cfg.scene_overrides,
            split=cfg.split, sampler_steps=cfg.sampler_steps, text_scale=cfg.text_scale, action_scale=cfg.action_scale,
            device=cfg.device, precision=cfg.precision,
        )
        venv.reset(seed=[ep.seed for ep in chunk])
        frames = []
        for s in range(cfg.horizon):
            actions = np.stack([ep.actions[cfg.context + s] for ep in chunk])
            frames.append(venv.step(actions)[0])
        venv.close()
        out.append(np.stack(frames, axis=1))
    return np.concatenate(out)


def reader_error(episodes: list[PhysicsEpisode]) -> float:
    """The detector on true frames against the true positions (px), for objects with
    at least 10 pixels in view: the error the comparison itself carries."""
    from worldsim.evaluate.detect import detect_objects
    from worldsim.sim import palette

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
    from worldsim.evaluate.metrics import rollout_metrics
    from worldsim.sim import palette

    colours = np.array([palette.rgb(o.colour) for o in ep.spec.objects])
    names = [o.name for o in ep.spec.objects]
    pane = next((i for i, o in enumerate(ep.spec.objects) if o.shape == "pane"), None)
    return rollout_metrics(
        ep.truth, pred, colours, prev_truth=ep.last_context_frame, names=names, agent=ep.spec.agent_index, pane=pane,
        truth_events=ep.events, context=ep.context, pane_colour=palette.rgb(palette.PANE_COLOUR[0]) if pane is not None else None,
    )


def run(cfg: CompareConfig, *, keep: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Everything ``python -m worldsim.compare`` does; returns metrics.json's content.
    ``keep``, if given, receives the ``truth`` and ``model`` frames (and each
    baseline's) of the first ``cfg.videos`` episodes."""
    from tqdm import tqdm

    from worldsim.evaluate import baselines as B
    from worldsim.evaluate.report import aggregate, plot_horizon, score, summarize, write_report, write_video
    from worldsim.models.world import load_world
    from worldsim.sim.engine import make_engine
    from worldsim_envs.learned_world import NO_CHECKPOINT, default_checkpoint

    checkpoint = cfg.checkpoint or default_checkpoint()
    if checkpoint is None:
        raise ValueError(NO_CHECKPOINT.replace("LearnedWorld-v0", "compare").replace("gymnasium.make('worldsim:LearnedWorld-v0', checkpoint=PATH)", "checkpoint=PATH"))
    world = load_world(checkpoint)
    h, w = world.config["data"]["resolution"]
    cfg = dataclasses.replace(cfg, resolution=f"{h}x{w}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    episodes = [physics_episode(cfg, s) for s in tqdm(seeds, desc="physics", file=sys.stderr, leave=False)]
    preds = {"model": learned_rollouts(checkpoint, cfg, episodes)}
    if cfg.checkpoint_b:
        preds["model_b"] = learned_rollouts(cfg.checkpoint_b, cfg, episodes)
    engine = make_engine(cfg.engine)
    other = make_engine(next(e for e in ENGINES if e != cfg.engine))
    base_frames: dict[str, list[np.ndarray]] = {b: [] for b in cfg.baselines}
    for ep in tqdm(episodes, desc="baselines", file=sys.stderr, leave=False):
        for b in cfg.baselines:
            if b == "copy_last":
                base_frames[b].append(B.copy_last(ep))
            elif b == "constant_velocity":
                base_frames[b].append(B.constant_velocity(ep, engine))
            elif b == "autoencoder":
                base_frames[b].append(B.autoencoder(ep, world.autoencoder))
            elif b == "physical_variance":
                base_frames[b].append(B.physical_variance(ep, engine))
            elif b == "other_engine":
                base_frames[b].append(B.other_engine(ep, other))
    engine.close()
    other.close()
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


def _overrides(scene: str, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a composed scene config that differ from the scene's defaults."""
    from worldsim.sim.scenes import scene_config

    default = scene_config(scene)
    return {k: v for k, v in values.items() if getattr(default, k, None) != v}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="compare")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        scene = plain.pop("scene")
        scene.pop("_target_", None)
        plain["scene"] = HydraConfig.get().runtime.choices["scene"]
        plain["scene_overrides"] = _overrides(plain["scene"], scene)
        plain["engine"] = plain.pop("engine")["name"]
        result = run(CompareConfig(**plain))
        s = result["summary"]["model"]
        print(f"wrote {Path(cfg.out).resolve()}: position error at step 16 {s.get('position_error_px', {}).get('at_16')}, "
              f"score {result.get('scores', {}).get('model', {}).get('score')}")
    except ValueError as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
