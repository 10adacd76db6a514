"""Where actions come from when generating data.

An action is the agent's command: a target velocity in ``[-1, 1]^2`` times
``AgentSpec.max_speed`` (see :class:`worldsim.sim.spec.AgentSpec`), in the image's
axes: x to the right, y *up* in the plane (``v``), like the plane coordinates.

Two sources:

* :func:`ou_actions`: smooth random commands, an Ornstein-Uhlenbeck process (open
  loop, drawn up front from the episode's generator).
* :class:`ScriptedPusher`: a closed-loop policy that walks round an object and pushes
  it toward a goal region; it reads the state of the previous frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from worldsim.sim.spec import SceneSpec


def ou_actions(rng: np.random.Generator, num_frames: int, *, fps: int, theta: float = 1.5, sigma: float = 1.2) -> np.ndarray:
    """(T, 2) float32 smooth random actions; ``actions[0]`` is zero (it drives nothing).

    ``a <- a - theta a dt + sigma sqrt(dt) N(0, 1)``, clipped to [-1, 1]: ``theta``
    (1/s) pulls commands back to rest, ``sigma`` sets how far they wander.
    """
    dt = 1.0 / fps
    a = np.zeros((num_frames, 2), np.float32)
    x = rng.uniform(-1, 1, 2)
    for t in range(1, num_frames):
        x = x - theta * x * dt + sigma * math.sqrt(dt) * rng.standard_normal(2)
        x = np.clip(x, -1.0, 1.0)
        a[t] = x
    return a


@dataclass
class ScriptedPusher:
    """Pushes object ``target`` toward the goal point ``goal`` (u, v in metres).

    Each frame: if the agent is behind the object (on the far side from the goal),
    drive through the object toward the goal; otherwise go to the point behind it,
    stepping round the object rather than through it.
    """

    spec: SceneSpec
    target: int
    goal: tuple[float, float]
    speed: float = 0.8  # fraction of max speed when pushing
    approach_speed: float = 1.0

    def __post_init__(self) -> None:
        agent = self.spec.agent_index
        if agent is None:
            raise ValueError("ScriptedPusher needs a scene with an agent")
        self.agent = agent
        self._r_agent = self.spec.objects[agent].radius
        self._r_target = self.spec.objects[self.target].radius

    def __call__(self, t: int, state: dict[str, np.ndarray]) -> np.ndarray:
        """The action for the step into frame ``t``, from the state of frame t - 1."""
        cam = self.spec.camera
        ppm = cam.pixels_per_metre
        pos = state["positions"].astype(np.float64) / ppm
        pos[:, 1] = cam.box_height - pos[:, 1]  # pixels (y down) -> plane (v up)
        a, o = pos[self.agent], pos[self.target]
        to_goal = np.asarray(self.goal) - o
        dist_goal = np.linalg.norm(to_goal)
        if dist_goal < 0.05:
            return np.zeros(2, np.float32)
        d = to_goal / dist_goal
        behind = o - d * (self._r_target + self._r_agent + 0.03)
        rel = a - o
        along = rel @ d  # < 0: the agent is on the far side from the goal
        lateral = rel - along * d
        if along < 0 and np.linalg.norm(lateral) < 0.6 * (self._r_target + self._r_agent):
            cmd = d * self.speed + (-lateral) * 2.0  # push, and stay in line
        else:
            to_behind = behind - a
            cmd = to_behind * 4.0
            # Going round: if the object lies between the agent and the point behind
            # it, side-step perpendicular to the line through the object.
            if along > -(self._r_target + self._r_agent) and np.linalg.norm(rel) < 2.5 * (self._r_target + self._r_agent):
                perp = np.array([-d[1], d[0]])
                side = 1.0 if rel @ perp >= 0 else -1.0
                cmd = cmd + side * perp * 1.5
            n = np.linalg.norm(cmd)
            if n > self.approach_speed:
                cmd = cmd / n * self.approach_speed
        return np.clip(cmd, -1.0, 1.0).astype(np.float32)
