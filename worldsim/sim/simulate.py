"""Run one episode: a spec, an engine and actions in; every frame's ground truth out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np

from worldsim.sim.engine import Engine
from worldsim.sim.spec import SceneSpec

ACTION_DIM = 2

# A closed-loop action source: policy(t, state of frame t - 1) -> action for the step into t.
Policy = Callable[[int, dict[str, np.ndarray]], np.ndarray]
Actions = Union[np.ndarray, Policy, None]


def simulate(spec: SceneSpec, engine: Engine, actions: Actions = None) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Simulate ``spec`` for ``spec.num_frames`` frames.

    Args:
      spec: the scene.
      engine: any engine; it is reset to ``spec``.
      actions: (T, 2) float32 in [-1, 1], where ``actions[t]`` drives the step from
        frame t-1 to frame t (so ``actions[0]`` is unused and stored as zero); or a
        policy ``f(t, state) -> (2,)`` called with the state of frame t - 1; or None
        (zeros). The actions applied are returned either way.

    Returns:
      ``(arrays, events)``. ``arrays`` holds ``frames (T, H, W, 3) uint8``,
      ``segmentation (T, H, W) uint8``, ``actions (T, 2) float32``,
      ``positions (T, N, 2)`` and ``velocities (T, N, 2)`` float32 in pixels and
      pixels/s, ``angles (T, N)`` float32 and ``visible_pixels (T, N) int32``.
    """
    T, H, W = spec.num_frames, spec.camera.height, spec.camera.width
    N = len(spec.objects)
    policy = actions if callable(actions) else None
    if policy is not None or actions is None:
        actions = np.zeros((T, ACTION_DIM), np.float32)
    actions = np.asarray(actions, dtype=np.float32).copy()
    if actions.shape != (T, ACTION_DIM):
        raise ValueError(f"actions must have shape ({T}, {ACTION_DIM}), got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise ValueError("actions contain NaN or inf")
    actions[0] = 0.0
    st: dict[str, np.ndarray] = {}
    frames = np.empty((T, H, W, 3), np.uint8)
    seg = np.empty((T, H, W), np.uint8)
    pos = np.empty((T, N, 2), np.float32)
    vel = np.empty((T, N, 2), np.float32)
    ang = np.empty((T, N), np.float32)
    engine.reset(spec)
    for t in range(T):
        if t > 0:
            if policy is not None:
                actions[t] = np.clip(np.asarray(policy(t, st), dtype=np.float32).reshape(ACTION_DIM), -1.0, 1.0)
            engine.step(actions[t])
        frames[t], seg[t] = engine.render()
        st = engine.state()
        pos[t], vel[t], ang[t] = st["positions"], st["velocities"], st["angles"]
    counts = np.stack([np.bincount(s.ravel(), minlength=N + 1)[1 : N + 1] for s in seg]).astype(np.int32)
    arrays = {
        "frames": frames,
        "segmentation": seg,
        "actions": np.clip(actions, -1.0, 1.0),
        "positions": pos,
        "velocities": vel,
        "angles": ang,
        "visible_pixels": counts,
    }
    events = sorted(engine.events() + occlusion_events(spec, counts, pos), key=lambda e: (e["frame"], e["type"]))
    return arrays, events


def occlusion_events(spec: SceneSpec, visible_pixels: np.ndarray, positions: np.ndarray) -> list[dict[str, Any]]:
    """One event per stretch of frames in which an object is wholly hidden.

    ``{"type": "occlusion", "frame": start, "object", "start", "end", "occluder"}``:
    hidden from frame ``start`` up to (not including) ``end``, the first frame it is
    seen again (None if it stays hidden to the end); ``occluder`` is the fixture
    in front of its true position when it vanished.
    """
    events = []
    T, N = visible_pixels.shape
    ppm = spec.camera.pixels_per_metre
    for i, o in enumerate(spec.objects):
        hidden = visible_pixels[:, i] == 0
        t = 0
        while t < T:
            if not hidden[t]:
                t += 1
                continue
            start = t
            while t < T and hidden[t]:
                t += 1
            x, y = positions[start, i] / ppm
            u, v = x, spec.camera.box_height - y
            occluder = next(
                (f.name for f in spec.fixtures if abs(u - f.position[0]) <= f.size[0] and abs(v - f.position[1]) <= f.size[1]), None
            )
            events.append(
                {"type": "occlusion", "frame": start, "object": o.name, "start": start, "end": t if t < T else None, "occluder": occluder}
            )
    return events
