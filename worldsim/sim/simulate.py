"""Run one episode: a spec, an engine and actions in; every frame's ground truth out."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.sim.engine import Engine
from worldsim.sim.spec import SceneSpec

ACTION_DIM = 2


def simulate(spec: SceneSpec, engine: Engine, actions: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Simulate ``spec`` for ``spec.num_frames`` frames.

    Args:
      spec: the scene.
      engine: any engine; it is reset to ``spec``.
      actions: (T, 2) float32 in [-1, 1]; ``actions[t]`` drives the step from frame
        t-1 to frame t, so ``actions[0]`` is unused (and stored as zero). None: zeros.

    Returns:
      ``(arrays, events)``. ``arrays`` holds ``frames (T, H, W, 3) uint8``,
      ``segmentation (T, H, W) uint8``, ``actions (T, 2) float32``,
      ``positions (T, N, 2)`` and ``velocities (T, N, 2)`` float32 in pixels and
      pixels/s, ``angles (T, N)`` float32 and ``visible_pixels (T, N) int32``.
    """
    T, H, W = spec.num_frames, spec.camera.height, spec.camera.width
    N = len(spec.objects)
    if actions is None:
        actions = np.zeros((T, ACTION_DIM), np.float32)
    actions = np.asarray(actions, dtype=np.float32).copy()
    if actions.shape != (T, ACTION_DIM):
        raise ValueError(f"actions must have shape ({T}, {ACTION_DIM}), got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise ValueError("actions contain NaN or inf")
    actions[0] = 0.0
    frames = np.empty((T, H, W, 3), np.uint8)
    seg = np.empty((T, H, W), np.uint8)
    pos = np.empty((T, N, 2), np.float32)
    vel = np.empty((T, N, 2), np.float32)
    ang = np.empty((T, N), np.float32)
    engine.reset(spec)
    for t in range(T):
        if t > 0:
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
    return arrays, engine.events()
