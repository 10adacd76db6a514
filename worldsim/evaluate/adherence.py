"""Does the model do what the prompt says? ``python -m worldsim.adherence checkpoint=PATH
samples=N out=DIR`` measures Sora-style sampling against the physics, with the
colour detector of :mod:`worldsim.evaluate.detect`:

``t2v``
    Short prompts (``prompts``) are expanded into specs and captions; the model
    generates a clip from the caption alone. A sample adheres when the set of object
    colours seen in it (each in at least a quarter of its frames) is exactly the
    spec's: right count, right colours, nothing spurious. The same check on the
    physics rendering of each spec is reported beside it (the reader's own ceiling).
``pane_strength``
    Shatter episodes whose first impact comes after the context: from the same first
    frames, the caption saying "fragile" and then "sturdy". Break rate of each and
    their gap (points), for the model and for the physics rerun with each strength.
``bounciness``
    One ball, first bounce after the context: the caption saying "very bouncy" and
    then "dead". Rebound height (px, from the first floor landing to the highest
    point after it), model and physics.
``extend`` / ``extend_backward`` / ``connect``
    The physics rendering of a spec, ``context`` frames of it given (the first, the
    last, or both ends); the generated frames against the true ones: position error
    (px), count violations, and the one-step error (the first generated frame).
``loop``
    The first true frame given, the clip generated so that its last frame leads back
    into it. Seam error: how far the jump from the last frame to the first departs
    from the clip's typical frame-to-frame motion (px); it should be no larger than
    the model's one-step error (from ``extend``).

Writes ``DIR/adherence.json`` (every figure, per check) and ``DIR/adherence.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldsim.atomic import atomic_write_text
from worldsim.checkpoint import world_checkpoint
from worldsim.evaluate.detect import detect_objects, fixture_colours
from worldsim.evaluate.metrics import BREAK_PIECES, pane_pieces, rollout_metrics
from worldsim.sampler import Sampler
from worldsim.sim import palette
from worldsim.sim.captions import caption_detailed
from worldsim.sim.engines import make_engine
from worldsim.sim.prompts import expand_prompt
from worldsim.sim.scenes import scene_config
from worldsim.sim.simulate import simulate

log = logging.getLogger("worldsim.adherence")

CHECKS = ("t2v", "pane_strength", "bounciness", "extend", "extend_backward", "connect", "loop")
DEFAULT_PROMPTS = (
    "a red ball",
    "two bouncy balls, low gravity",
    "three balls",
    "a ball hits a fragile pane",
    "a ball hits a sturdy pane",
    "two balls move behind a grey screen",
    "an agent pushes a red box and a blue ball",
)
SEEN_FRACTION = 0.25  # a colour is in a clip when it shows in at least this share of frames
MIN_PIXELS = 6  # ... with at least this many pixels


@dataclass
class AdherenceConfig:
    checkpoint: str | None = None  # a DiT run or checkpoint (default: the bundled reference model)
    checks: list[str] = field(default_factory=lambda: list(CHECKS))
    samples: int = 16  # per check
    frames: int = 16  # length of every generated clip
    context: int = 2  # frames given by extend, extend_backward, connect (per side), pane_strength, bounciness
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    engine: str = "pybullet"  # the physics the clips are measured against
    split: str = "test"
    seed: int = 0
    steps: int = 8
    method: str = "euler"
    text_scale: float = 1.0
    out: str = "adherence"
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        bad = [c for c in self.checks if c not in CHECKS]
        if bad:
            raise ValueError(f"unknown checks {bad}; valid: {list(CHECKS)}")
        if self.samples < 1 or self.frames < 3 or self.context < 1 or 2 * self.context >= self.frames:
            raise ValueError(f"need samples >= 1, frames >= 3 and 1 <= context < frames / 2; got samples={self.samples}, "
                             f"frames={self.frames}, context={self.context}")


# -- reading clips ------------------------------------------------------------------------------------
def colours_seen(frames: np.ndarray, names: list[str] | None = None, others: np.ndarray | None = None) -> set[str]:
    """The object colours (palette names; the agent's white included) that show in at
    least ``SEEN_FRACTION`` of ``frames``."""
    names = names or [*palette.OBJECT_COLOURS, palette.AGENT_COLOUR[0]]
    d = detect_objects(frames, np.array([palette.rgb(n) for n in names]), min_pixels=MIN_PIXELS, max_distance=60.0, others=others)
    share = d["present"].mean(0)
    return {n for n, s in zip(names, share) if s >= SEEN_FRACTION}


def broke(frames: np.ndarray) -> bool:
    """Did the pane break? Its colour splits into 3 or more pieces in some frame (an
    intact pane is one piece, two where a ball in front of it cuts it)."""
    return bool((pane_pieces(frames) >= BREAK_PIECES).any())


def rebound_px(frames: np.ndarray, colour: str, others: np.ndarray | None = None) -> float | None:
    """Rebound height of the ball of ``colour``: from its first floor bounce (the first
    frame where it stops falling, in the lower half of the frame) to the highest point
    after it (px); None if it never comes down."""
    d = detect_objects(frames, np.array([palette.rgb(colour)]), min_pixels=2, max_distance=60.0, others=others)
    y = d["centroids"][:, 0, 1]  # px, down
    half = frames.shape[1] / 2
    for b in range(1, len(y) - 1):
        if np.isfinite(y[b - 1 : b + 2]).all() and y[b] > y[b - 1] and y[b + 1] <= y[b] + 0.25 and y[b] > half:
            return float(y[b] - np.nanmin(y[b:]))
    return None


# -- the physics side -----------------------------------------------------------------------------
class Physics:
    """Specs and their renderings at the model's resolution, one engine."""

    def __init__(self, engine: str, resolution: tuple[int, int], split: str):

        self.engine = make_engine(engine)
        self.resolution, self.split = resolution, split

    def spec(self, scene: str, seed: int, frames: int, **overrides: Any):  # type: ignore[no-untyped-def]

        cfg = scene_config(scene, **overrides)
        rng = np.random.default_rng([seed, 7])
        return cfg.sample(rng, num_frames=frames, resolution=self.resolution, split=self.split)

    def run(self, spec):  # type: ignore[no-untyped-def]

        return simulate(spec, self.engine)

    def close(self) -> None:
        self.engine.close()


def _first_event_frame(events: list[dict[str, Any]]) -> int:
    return min((int(e["frame"]) for e in events if e["type"] in ("collision", "wall", "break")), default=10**9)


def _with_label(spec, key: str, word: str, **changes: Any):  # type: ignore[no-untyped-def]
    labels = dict(spec.labels)
    labels[key] = word
    return dataclasses.replace(spec, labels=labels, **changes)


def _mid(r: list[float]) -> float:
    return float(r[0] + r[1]) / 2


# -- the checks ---------------------------------------------------------------------------------------
def check_t2v(cfg: AdherenceConfig, sampler, physics: Physics) -> dict[str, Any]:  # type: ignore[no-untyped-def]

    rows = []
    for i in range(cfg.samples):
        prompt = cfg.prompts[i % len(cfg.prompts)]
        e = expand_prompt(prompt, seed=cfg.seed + i, resolution=physics.resolution, num_frames=cfg.frames, split=cfg.split)
        want = {o.colour for o in e.spec.objects if o.shape != "pane"}
        truth_frames = physics.run(e.spec)[0]["frames"]
        frames, _ = sampler.generate("t2v", caption_detailed(e.spec, []), frames=cfg.frames, seed=cfg.seed + i, steps=cfg.steps,
                                     method=cfg.method, text_scale=cfg.text_scale)
        screens = fixture_colours(e.spec.fixtures)  # never an object's
        seen, seen_truth = colours_seen(frames, others=screens), colours_seen(truth_frames, others=screens)
        rows.append({"prompt": prompt, "scene": e.spec.scene, "expected": sorted(want), "seen": sorted(seen), "seen_in_physics": sorted(seen_truth),
                     "adheres": seen == want, "count_right": len(seen) == len(want), "physics_adheres": seen_truth == want})
    return {
        "adherence": float(np.mean([r["adheres"] for r in rows])),
        "count_accuracy": float(np.mean([r["count_right"] for r in rows])),
        "physics_adherence": float(np.mean([r["physics_adheres"] for r in rows])),
        "samples": rows,
    }


def _hidden_pairs(cfg: AdherenceConfig, physics: Physics, scene: str, overrides: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Specs of ``scene`` whose first contact comes after the context (so the given
    frames are the same whatever the hidden parameter)."""
    found, seed = [], cfg.seed
    while len(found) < cfg.samples and seed < cfg.seed + 50 * cfg.samples:
        spec = physics.spec(scene, seed, cfg.frames, **overrides)
        arrays, events = physics.run(spec)
        if _first_event_frame(events) >= cfg.context:
            found.append((seed, spec, arrays))
        seed += 1
    if not found:
        raise ValueError(f"no {scene} spec in {50 * cfg.samples} seeds has its first contact after {cfg.context} context frames")
    return found


def check_pane_strength(cfg: AdherenceConfig, sampler, physics: Physics) -> dict[str, Any]:  # type: ignore[no-untyped-def]

    strengths = scene_config("shatter").strength  # type: ignore[attr-defined]
    rows = []
    for seed, spec, arrays in _hidden_pairs(cfg, physics, "shatter", {}):
        row: dict[str, Any] = {"seed": seed}
        for word in ("fragile", "sturdy"):
            s = _with_label(spec, "pane.strength", word)
            pane = next(o for o in s.objects if o.shape == "pane")
            s = dataclasses.replace(s, objects=tuple(
                dataclasses.replace(o, pane=dataclasses.replace(o.pane, strength=_mid(strengths[word]))) if o is pane else o for o in s.objects
            ))
            true_frames, events = physics.run(s)
            frames, _ = sampler.generate("extend", caption_detailed(s, []), frames=cfg.frames, inputs=[arrays["frames"][: cfg.context]],
                                         context=cfg.context, seed=seed, steps=cfg.steps, method=cfg.method, text_scale=cfg.text_scale)
            row[word] = {"model_broke": broke(frames[cfg.context :]), "physics_broke": any(e["type"] == "break" for e in events),
                         "reader_broke": broke(true_frames["frames"][cfg.context :])}
        rows.append(row)

    def rate(word: str, key: str) -> float:
        return float(np.mean([r[word][key] for r in rows]))

    out = {w: {k: rate(w, k) for k in ("model_broke", "physics_broke", "reader_broke")} for w in ("fragile", "sturdy")}
    return {
        "break_rate": out,
        "gap_points": round(100 * (out["fragile"]["model_broke"] - out["sturdy"]["model_broke"]), 1),
        "physics_gap_points": round(100 * (out["fragile"]["physics_broke"] - out["sturdy"]["physics_broke"]), 1),
        "samples": rows,
    }


def check_bounciness(cfg: AdherenceConfig, sampler, physics: Physics) -> dict[str, Any]:  # type: ignore[no-untyped-def]

    table = scene_config("bouncing_balls").restitution  # type: ignore[attr-defined]
    rows = []
    for seed, spec, arrays in _hidden_pairs(cfg, physics, "bouncing_balls", {"num_balls": [1, 1], "ood": {}}):
        ball = spec.objects[0]
        row: dict[str, Any] = {"seed": seed, "colour": ball.colour}
        for word in ("very bouncy", "dead"):
            s = _with_label(spec, f"{ball.name}.restitution", word, objects=(dataclasses.replace(ball, restitution=_mid(table[word])),))
            true_frames = physics.run(s)[0]["frames"]
            frames, _ = sampler.generate("extend", caption_detailed(s, []), frames=cfg.frames, inputs=[arrays["frames"][: cfg.context]],
                                         context=cfg.context, seed=seed, steps=cfg.steps, method=cfg.method, text_scale=cfg.text_scale)
            screens = fixture_colours(s.fixtures)
            row[word] = {"model": rebound_px(frames, ball.colour, screens), "physics": rebound_px(true_frames, ball.colour, screens)}
        rows.append(row)

    def mean(word: str, key: str) -> float | None:
        v = [r[word][key] for r in rows if r[word][key] is not None]
        return round(float(np.mean(v)), 2) if v else None

    out = {w: {k: mean(w, k) for k in ("model", "physics")} for w in ("very bouncy", "dead")}
    landed = sum(r["very bouncy"]["physics"] is not None for r in rows)
    gap = None if None in (out["very bouncy"]["model"], out["dead"]["model"]) else round(out["very bouncy"]["model"] - out["dead"]["model"], 2)  # type: ignore[operator]
    pgap = None if None in (out["very bouncy"]["physics"], out["dead"]["physics"]) else round(out["very bouncy"]["physics"] - out["dead"]["physics"], 2)  # type: ignore[operator]
    return {"rebound_px": out, "gap_px": gap, "physics_gap_px": pgap, "landed_in_physics": landed, "samples": rows}


def _given(mode: str, n: int, k: int) -> np.ndarray:
    g = np.zeros(n, bool)
    if mode in ("extend", "connect"):
        g[:k] = True
    if mode in ("extend_backward", "connect"):
        g[n - k :] = True
    return g


def check_consistency(mode: str, cfg: AdherenceConfig, sampler, physics: Physics) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """extend, extend_backward or connect: generated frames against the physics."""
    scenes = ("bouncing_balls", "shatter", "occlusion")
    rows = []
    for i in range(cfg.samples):
        scene = scenes[i % len(scenes)]
        spec = physics.spec(scene, cfg.seed + i, cfg.frames)
        true = physics.run(spec)[0]["frames"]
        n, k = cfg.frames, cfg.context
        # what each mode is given: the clip's first frames to extend, its last to extend
        # backward, both for connect (the sampler keeps an input's last frames to extend
        # and its first to extend backward: a whole clip would give the wrong ones)
        inputs = {"extend": [true[:k]], "extend_backward": [true[n - k :]], "connect": [true[:k], true[n - k :]]}[mode]
        frames, given = sampler.generate(mode, caption_detailed(spec, []), frames=n, inputs=inputs, context=k, seed=cfg.seed + i, steps=cfg.steps,
                                         method=cfg.method, text_scale=cfg.text_scale)
        if not np.array_equal(given, _given(mode, n, k)) or not np.array_equal(frames[given], true[given]):
            raise RuntimeError(f"{mode}: the sampler was given other frames than the physics' at {np.flatnonzero(given).tolist()}; "
                               "the check would score the model against frames that do not follow them")
        idx = np.flatnonzero(~given)
        # compared in time order, starting from the given frame nearest the generated ones
        prev = true[idx[0] - 1] if idx[0] > 0 else true[idx[-1] + 1]
        order = idx if idx[0] > 0 else idx[::-1]
        colours = np.array([palette.rgb(o.colour) for o in spec.objects])
        m = rollout_metrics(true[order], frames[order], colours, prev_truth=prev, others=fixture_colours(spec.fixtures))
        pos = m["position_error_px"]
        rows.append({
            "scene": scene, "seed": cfg.seed + i,
            "position_error_px": float(np.nanmean(pos)) if np.isfinite(pos).any() else None,
            "one_step_error_px": float(pos[0]) if np.isfinite(pos[0]) else None,
            "count_violation_rate": float(np.mean(m["count_violation_rate"])),
        })

    def mean(key: str) -> float | None:
        v = [r[key] for r in rows if r[key] is not None]
        return round(float(np.mean(v)), 3) if v else None

    return {k: mean(k) for k in ("position_error_px", "one_step_error_px", "count_violation_rate")} | {"samples": rows}


def _positions(frames: np.ndarray, colours: list[str], others: np.ndarray | None = None) -> np.ndarray:

    return detect_objects(frames, np.array([palette.rgb(c) for c in colours]), min_pixels=2, max_distance=60.0, others=others)["centroids"]


def loop_seam(p: np.ndarray) -> dict[str, Any]:
    """The seam of a generated loop from object positions ``p`` (T, K, 2) (NaN where an
    object was not found): per object, the jump from the last frame back to the first
    against its typical (median) step. An object whose seam or typical step cannot be
    measured (not found in the first or last frame, or in no two consecutive frames) is
    counted in ``objects_unmeasured``, never averaged in."""
    steps = np.linalg.norm(np.diff(p, axis=0), axis=-1)  # (T-1, K)
    seam = np.linalg.norm(p[0] - p[-1], axis=-1)  # (K,)
    stepped = np.isfinite(steps).any(axis=0)  # (K,) objects with at least one measured step
    typical = np.full(seam.shape, np.nan)
    if stepped.any():
        typical[stepped] = np.nanmedian(steps[:, stepped], axis=0)
    err = np.abs(seam - typical)
    ok = np.isfinite(err)

    def mean(v: np.ndarray) -> float | None:
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else None

    return {"seam_jump_px": mean(seam), "typical_step_px": mean(typical), "seam_error_px": mean(err),
            "objects": int(seam.size), "objects_unmeasured": int((~ok).sum())}


def check_loop(cfg: AdherenceConfig, sampler, physics: Physics, one_step: float | None) -> dict[str, Any]:  # type: ignore[no-untyped-def]

    rows = []
    for i in range(cfg.samples):
        spec = physics.spec("bouncing_balls", cfg.seed + i, cfg.frames)
        true = physics.run(spec)[0]["frames"]
        frames, _ = sampler.generate("loop", caption_detailed(spec, []), frames=cfg.frames, inputs=[true[:1]], seed=cfg.seed + i, steps=cfg.steps,
                                     method=cfg.method, text_scale=cfg.text_scale)
        rows.append({"seed": cfg.seed + i} | loop_seam(_positions(frames, [o.colour for o in spec.objects], fixture_colours(spec.fixtures))))
    v = [r["seam_error_px"] for r in rows if r["seam_error_px"] is not None]
    seam_error = round(float(np.mean(v)), 3) if v else None
    return {"seam_error_px": seam_error, "one_step_error_px": one_step,
            "seam_within_one_step": None if seam_error is None or one_step is None else seam_error <= one_step,
            "objects": sum(r["objects"] for r in rows), "objects_unmeasured": sum(r["objects_unmeasured"] for r in rows), "samples": rows}


# -- the run ------------------------------------------------------------------------------------------
def run_adherence(cfg: AdherenceConfig) -> dict[str, Any]:
    """Everything ``python -m worldsim.adherence`` does; returns adherence.json's content."""
    checkpoint = world_checkpoint(cfg.checkpoint)
    sampler = Sampler(str(checkpoint), device=cfg.device, precision=cfg.precision)
    physics = Physics(cfg.engine, sampler.resolution, cfg.split)  # type: ignore[arg-type]
    result: dict[str, Any] = {"config": {**dataclasses.asdict(cfg), "checkpoint": str(checkpoint)}}
    try:
        for check in tqdm(cfg.checks, desc="adherence", file=sys.stderr):
            if check == "t2v":
                result[check] = check_t2v(cfg, sampler, physics)
            elif check == "pane_strength":
                result[check] = check_pane_strength(cfg, sampler, physics)
            elif check == "bounciness":
                result[check] = check_bounciness(cfg, sampler, physics)
            elif check == "loop":
                one = result.get("extend", {}).get("one_step_error_px")
                result[check] = check_loop(cfg, sampler, physics, one)
            else:
                result[check] = check_consistency(check, cfg, sampler, physics)
    finally:
        physics.close()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    atomic_write_text(out / "adherence.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / "adherence.md", summary_markdown(result))
    return result


def summary_markdown(r: dict[str, Any]) -> str:
    c = r["config"]
    lines = [f"# Prompt adherence: {c['checkpoint']}", "",
             f"{c['samples']} samples per check, {c['frames']} frames, {c['context']} given, {c['steps']} {c['method']} steps, "
             f"measured against {c['engine']} ({c['split']} ranges).", "", "| check | model | physics | figure |", "|---|---|---|---|"]
    if "t2v" in r:
        t = r["t2v"]
        lines.append(f"| t2v count and colours | {t['adherence']:.0%} | {t['physics_adherence']:.0%} | share of clips with exactly the prompt's objects |")
    if "pane_strength" in r:
        p = r["pane_strength"]
        lines.append(f"| fragile − sturdy break rate | {p['gap_points']} pts | {p['physics_gap_points']} pts | "
                     f"fragile {p['break_rate']['fragile']['model_broke']:.0%}, sturdy {p['break_rate']['sturdy']['model_broke']:.0%} |")
    if "bounciness" in r:
        b = r["bounciness"]
        lines.append(f"| very bouncy − dead rebound | {b['gap_px']} px | {b['physics_gap_px']} px | "
                     f"rebound {b['rebound_px']['very bouncy']['model']} vs {b['rebound_px']['dead']['model']} px |")
    for m in ("extend", "extend_backward", "connect"):
        if m in r:
            x = r[m]
            lines.append(f"| {m} position error | {x['position_error_px']} px | 0 | one step {x['one_step_error_px']} px, "
                         f"count violations {x['count_violation_rate']} |")
    if "loop" in r:
        lp = r["loop"]
        lines.append(f"| loop seam error | {lp['seam_error_px']} px | – | one-step error {lp['one_step_error_px']} px; "
                     f"{lp.get('objects_unmeasured', 0)} of {lp.get('objects', 0)} objects not found at the seam |")
    return "\n".join(lines) + "\n"
