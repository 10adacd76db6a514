"""The fidelity probe: does a learned world keep its objects? A couple of minutes on a CPU.

Every recipe candidate is judged by it (docs/RECIPE.md), on stored test episodes of a
data folder (no physics is rerun), per scene:

* **teacher-forced one step**: from ``context`` true frames, the next frame, at several
  points of each episode. Latent MSE (both frames through the model's encoder), the
  pixel MSE where the objects are (in the frame or the one before: what object
  weighting aims at) and the position error of the objects found in both (px), each
  beside copying the last frame; and the share of objects lost.
* **autoregressive**: from the first ``context`` true frames, ``horizon`` steps under
  the episode's own actions. Position error and objects lost at every step (reported
  at 1, 4, 16), the count-violation rate (an object missing or spurious) over the
  horizon and, where the scene has a pane, break / no-break agreement.
* the model's speed: single-world steps per second.

An object is *lost* in a frame when it shows at least ``min_true_pixels`` pixels in the
truth and the prediction does not hold it: the detector (:mod:`worldsim.evaluate.detect`,
by palette colour) finds fewer than a quarter of its true pixel count in its colour,
or more than four times it (plus 8 pixels): a smear or speckle of the colour over
the frame is not the object, and noise must not pass for a kept world. The position error only covers objects found in both,
so it is always reported beside the share lost: neither is shown without the other.
Panes are left out of positions and losses (they break into fragments) and judged by
break agreement instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.data.dataset import object_mask, select_episodes
from worldsim.data.episode import load_episode
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.evaluate.detect import detect_objects, fixture_colours
from worldsim.evaluate.metrics import BREAK_PIECES, pane_pieces
from worldsim.frames import to_model
from worldsim.sim import palette
from worldsim.sim.captions import parse, render
from worldsim.simulator import LearnedSimulator

REPORT_STEPS = (1, 4, 16)


@dataclass
class FidelityConfig:
    """What the probe reads and how it steps the model."""

    checkpoint: str
    data: str
    scenes: list[str] | None = None  # null: every scene of the data's test split
    engine: str | None = "pybullet"  # null: any
    episodes: int = 16  # per scene
    # the episodes read are first_episode .. first_episode + episodes - 1 of the split, by index:
    # a probe that picks a checkpoint can read other episodes than the ones its figures are reported on
    first_episode: int = 0
    context: int = 4
    horizon: int = 16
    one_step_points: int = 4  # teacher-forced predictions per episode (every 4th frame after the context)
    sampler_steps: int | None = None  # null: the model's own (flow.sampler_steps)
    method: str = "euler"
    context_noise: float | None = None  # noise level of the cached frames (null: the sampler's default)
    batch: int = 32  # worlds stepped together
    seed: int = 0
    min_true_pixels: int = 12
    speed_steps: int = 20  # single-world steps timed (0: skip)
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # step the compiled DiT (LearnedSimulator(compile=True)); the figures say whether it ran compiled
    split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.context < 1 or self.horizon < 1 or self.episodes < 1:
            raise ValueError("fidelity: context, horizon and episodes must be at least 1")
        if self.first_episode < 0:
            raise ValueError(f"fidelity: first_episode must be >= 0, got {self.first_episode}")


@dataclass
class _Episode:
    frames: np.ndarray  # (T, H, W, 3) uint8
    objects: np.ndarray  # (T, H, W) bool: pixels an object (not the background or walls) covers
    actions: np.ndarray  # (T, A)
    visible: np.ndarray  # (T, N) true visible pixels
    colours: np.ndarray  # (N, 3)
    whole: list[int]  # objects that are not panes
    pane: bool
    caption: str
    segmentation: np.ndarray  # (T, H, W) instance ids (tools/flow_probe.py --oracle reads the motion off it)
    fixtures: np.ndarray  # (M, 3) the colours of the scene's fixtures (its screens): never an object's


def _episodes(cfg: FidelityConfig, scene: str) -> list[_Episode]:
    rows = select_episodes(cfg.data, split=cfg.split, scenes=[scene], engines=[cfg.engine] if cfg.engine else None,
                           min_frames=cfg.context + cfg.horizon)
    rows = sorted(rows, key=lambda r: (r["engine"], r["index"]))
    if rows and cfg.first_episode + cfg.episodes > len(rows):
        raise ValueError(f"fidelity: {cfg.data} has {len(rows)} {cfg.split} episodes of {scene}; episodes {cfg.first_episode}.."
                         f"{cfg.first_episode + cfg.episodes - 1} were asked for (lower first_episode or episodes)")
    rows = rows[cfg.first_episode : cfg.first_episode + cfg.episodes]
    out = []
    for r in rows:
        ep = load_episode(Path(cfg.data) / r["path"])
        objects = r["params"]["objects"]
        whole = [i for i, o in enumerate(objects) if o["shape"] != "pane"]
        out.append(_Episode(ep["frames"], object_mask(ep["segmentation"], len(objects)), ep["actions"], ep["visible_pixels"], np.array([palette.rgb(o["colour"]) for o in objects]),
                            whole, len(whole) < len(objects), _static_caption(r["caption_detailed"]), ep["segmentation"],
                            fixture_colours(r["params"].get("fixtures"))))
    return out


def _static_caption(caption: str) -> str:
    """The caption without its events: what a simulator's prompt knows at the start."""
    return render(parse(caption).without_events())


def _compare(
    truth: np.ndarray, pred: np.ndarray, ep: _Episode, visible: np.ndarray, min_true: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of (F, H, W, 3) truth and prediction: the summed position error of the
    objects found in both, how many those are, how many objects were lost, how many were
    in view, and how many the prediction shows that the truth does not (each (F,))."""
    cols = ep.colours[ep.whole]
    dt = detect_objects(truth, cols, min_pixels=2, others=ep.fixtures)
    dp = detect_objects(pred, cols, min_pixels=2, others=ep.fixtures)
    shown = visible[:, ep.whole] >= min_true  # (F, K)
    true_area, area = dt["areas"].astype(np.float64), dp["areas"].astype(np.float64)
    held = (area >= np.maximum(2, 0.25 * true_area)) & (area <= 4 * true_area + 8)
    both = dt["present"] & held & shown
    err = np.where(both, np.linalg.norm(dt["centroids"] - dp["centroids"], axis=-1), 0.0)
    lost = shown & ~held
    spurious = dp["present"] & ~dt["present"]
    return err.sum(1), both.sum(1), lost.sum(1), shown.sum(1), spurious.sum(1)


def _object_mse(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float | None:
    """Mean squared error, frames in [-1, 1], over the (F, H, W) pixels ``where`` holds
    (None: no such pixel)."""
    if not where.any():
        return None
    d = (pred.astype(np.float64) - truth.astype(np.float64)) / 127.5
    return round(float(np.square(d[where]).mean()), 5)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


class _Probe:
    def __init__(self, cfg: FidelityConfig):

        self.cfg = cfg
        sampler = SamplerConfig(method=cfg.method, steps=cfg.sampler_steps)
        self.sim = LearnedSimulator(cfg.checkpoint, device=cfg.device, precision=cfg.precision, sampler=sampler, context_noise=cfg.context_noise,
                                    compile=cfg.compile)

    def rollout(self, starts: list[tuple[_Episode, int]], steps: int, seed: int) -> np.ndarray:
        """Frames (W, steps, H, W, 3) of worlds started at (episode, frame s): context
        frames s-K .. s-1, then the episode's actions from frame s on."""
        k = self.cfg.context
        out = []
        for c in range(0, len(starts), self.cfg.batch):
            chunk = starts[c : c + self.cfg.batch]
            frames = np.stack([ep.frames[s - k : s] for ep, s in chunk])
            acts = np.stack([ep.actions[s - k : s] for ep, s in chunk]).astype(np.float32)
            gens = [torch.Generator().manual_seed(seed * 100_003 + c + i) for i in range(len(chunk))]
            self.sim.reset(frames, [ep.caption for ep, _ in chunk], gens, context_actions=acts)
            got = [self.sim.step(np.stack([ep.actions[s + j] for ep, s in chunk]).astype(np.float32)) for j in range(steps)]
            out.append(np.stack(got, 1))
        return np.concatenate(out)

    @torch.no_grad()
    def latent_mse(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean squared difference of (F, H, W, 3) frames in the model's latent space."""
        ae = self.sim.ae
        za = ae.encode(to_model(a, self.sim.device)[:, None]).float()
        zb = ae.encode(to_model(b, self.sim.device)[:, None]).float()
        return float((za - zb).square().mean())

    def scene(self, scene: str) -> dict[str, Any]:
        cfg = self.cfg
        eps = _episodes(cfg, scene)
        if not eps:
            raise ValueError(f"fidelity: no {cfg.split} episode of {scene} in {cfg.data} has {cfg.context + cfg.horizon} frames")
        k, H = cfg.context, cfg.horizon
        # Teacher-forced one step, at several points of each episode.
        points = [(ep, s) for ep in eps for s in range(k, len(ep.frames), 4)[: cfg.one_step_points]]
        pred1 = self.rollout(points, 1, cfg.seed)[:, 0]  # (P, H, W, 3)
        truth1 = np.stack([ep.frames[s] for ep, s in points])
        last1 = np.stack([ep.frames[s - 1] for ep, s in points])
        objects1 = np.stack([ep.objects[s] | ep.objects[s - 1] for ep, s in points])
        tf = {"model": [0.0, 0, 0, 0], "copy_last": [0.0, 0, 0, 0]}
        for i, (ep, s) in enumerate(points):
            vis = ep.visible[s : s + 1]
            for name, pr in (("model", pred1[i : i + 1]), ("copy_last", last1[i : i + 1])):
                e, n, lost, shown, _ = _compare(truth1[i : i + 1], pr, ep, vis, cfg.min_true_pixels)
                for j, v in enumerate((e.sum(), n.sum(), lost.sum(), shown.sum())):
                    tf[name][j] += v
        one_step = {
            "points": len(points),
            "latent_mse": round(self.latent_mse(pred1, truth1), 5),
            "latent_mse_copy_last": round(self.latent_mse(last1, truth1), 5),
            # where the objects are (in the true frame or the one before): what object weighting aims at
            "object_pixel_mse": _object_mse(pred1, truth1, objects1),
            "object_pixel_mse_copy_last": _object_mse(last1, truth1, objects1),
            "position_error_px": _ratio(tf["model"][0], tf["model"][1]),
            "position_error_px_copy_last": _ratio(tf["copy_last"][0], tf["copy_last"][1]),
            "objects_lost": _ratio(tf["model"][2], tf["model"][3]),
            "objects_lost_copy_last": _ratio(tf["copy_last"][2], tf["copy_last"][3]),
        }
        # Autoregressive, from the first context frames.
        preds = self.rollout([(ep, k) for ep in eps], H, cfg.seed + 1)  # (E, H, h, w, 3)
        err, found, lost, shown = np.zeros(H), np.zeros(H), np.zeros(H), np.zeros(H)
        spurious = np.zeros(H)
        breaks = []
        for ep, pr in zip(eps, preds):
            truth = ep.frames[k : k + H]
            e, n, lo, sh, sp = _compare(truth, pr, ep, ep.visible[k : k + H], cfg.min_true_pixels)  # the detections once
            err, found, lost, shown, spurious = err + e, found + n, lost + lo, shown + sh, spurious + sp
            if ep.pane:
                bt, bp = pane_pieces(truth).max() >= BREAK_PIECES, pane_pieces(pr).max() >= BREAK_PIECES
                breaks.append(bool(bt == bp))
        objects = sum(len(ep.whole) for ep in eps)
        with np.errstate(invalid="ignore", divide="ignore"):
            pos = np.where(found > 0, err / np.maximum(found, 1), np.nan)
            lost_rate = np.where(shown > 0, lost / np.maximum(shown, 1), np.nan)
        steps = [s for s in REPORT_STEPS if s <= H]
        ar = {
            "episodes": len(eps),
            "position_error_px": {f"at_{s}": (None if np.isnan(pos[s - 1]) else round(float(pos[s - 1]), 3)) for s in steps},
            "objects_lost": {f"at_{s}": (None if np.isnan(lost_rate[s - 1]) else round(float(lost_rate[s - 1]), 4)) for s in steps},
            "objects_lost_mean": round(float(lost.sum() / max(shown.sum(), 1)), 4),
            "count_violation_rate": round(float((lost.sum() + spurious.sum()) / max(objects * H, 1)), 4),
            "break_agreement": round(float(np.mean(breaks)), 3) if breaks else None,
            "position_error_px_curve": [None if np.isnan(v) else round(float(v), 3) for v in pos],
            "objects_lost_curve": [None if np.isnan(v) else round(float(v), 4) for v in lost_rate],
        }
        return {"one_step": one_step, "autoregressive": ar}

    def steps_per_s(self) -> float | None:
        if not self.cfg.speed_steps:
            return None
        sim, k = self.sim, self.cfg.context
        frames = np.zeros((1, k, sim.height, sim.width, 3), np.uint8)
        sim.reset(frames, "a ball bounces", [torch.Generator().manual_seed(0)])
        act = np.zeros((1, sim.action_dim), np.float32)
        sim.step(act)
        t0 = time.perf_counter()
        for _ in range(self.cfg.speed_steps):
            sim.step(act)
        return round(self.cfg.speed_steps / (time.perf_counter() - t0), 2)


def gates(scenes: dict[str, Any]) -> dict[str, bool]:
    """docs/RECIPE.md's gates, over every probed scene: (1) one teacher-forced step
    loses under 5% of objects and beats copy-last's position error; (2) 16
    autoregressive steps lose under 10% of objects."""
    one = all(
        (s["one_step"]["objects_lost"] or 0) < 0.05
        and s["one_step"]["position_error_px"] is not None
        and s["one_step"]["position_error_px_copy_last"] is not None
        and s["one_step"]["position_error_px"] < s["one_step"]["position_error_px_copy_last"]
        for s in scenes.values()
    )
    ar = all(s["autoregressive"]["objects_lost_mean"] < 0.10 for s in scenes.values())
    return {"one_step": bool(one), "autoregressive": bool(ar)}


def run_fidelity(cfg: FidelityConfig) -> dict[str, Any]:
    """The probe's figures for one checkpoint (see the module docstring)."""
    t0 = time.perf_counter()
    probe = _Probe(cfg)
    scenes = cfg.scenes or sorted({r["scene"] for r in select_episodes(cfg.data, split=cfg.split)})
    per_scene = {s: probe.scene(s) for s in scenes}
    speed = probe.steps_per_s()  # before reading whether it ran compiled: its batch of one compiles graphs of its own
    compute = probe.sim.trained_compute
    return {
        "bench": "fidelity",
        "checkpoint": str(cfg.checkpoint),
        "data": str(cfg.data),
        "step": probe.sim.trained_step,
        "train_flops": compute.get("flops"),
        "train_wall_s": compute.get("wall_s"),
        "context": cfg.context,
        "horizon": cfg.horizon,
        "sampler": {"method": cfg.method, "steps": probe.sim.sampler.steps, "context_noise": probe.sim.context_noise},
        "precision": probe.sim.precision,
        # asked for, and whether the simulator still steps its compiled DiT at the end (False where compiling
        # failed and it fell back to eager, with a warning; a graph Dynamo gave up on is not seen here)
        "compile": cfg.compile,
        "ran_compiled": probe.sim.compiled,
        "scenes": per_scene,
        "gates": gates(per_scene),
        "steps_per_s_single": speed,
        "probe_seconds": round(time.perf_counter() - t0, 1),
    }
