"""The reference rollouts every learned rollout is measured beside.

Each takes a physics episode (its spec, frames, states and actions; ``context``
frames given) and returns the ``horizon`` frames it predicts after the context:

* ``copy_last``: the last context frame, repeated (the floor for any model);
* ``constant_velocity``: objects carried on at their last velocity, re-rendered by
  the engine (what a model that knows no physics but momentum would do);
* ``autoencoder``: the true frames through the autoencoder (the ceiling: a model
  cannot be sharper than its decoder);
* ``physical_variance``: the physics rerun from a tiny perturbation of the initial
  state (1 mm, 0.1% of the speeds): the differences chaos alone allows;
* ``other_engine``: the same spec and actions in the other engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldsim.frames import to_model, to_uint8
from worldsim.sim.engine import Engine
from worldsim.sim.simulate import simulate
from worldsim.sim.spec import SceneSpec


@dataclass
class PhysicsEpisode:
    """A ground-truth episode of ``context + horizon`` frames."""

    spec: SceneSpec
    arrays: dict[str, np.ndarray]
    events: list[dict[str, Any]]
    context: int
    seed: int
    prompt: str = ""  # what a learned world is told at reset: the scene as PhysicsWorld-v0 knows it then (no agent policy)

    @property
    def horizon(self) -> int:
        return len(self.arrays["frames"]) - self.context

    @property
    def actions(self) -> np.ndarray:
        return self.arrays["actions"]

    @property
    def truth(self) -> np.ndarray:
        return self.arrays["frames"][self.context :]

    @property
    def last_context_frame(self) -> np.ndarray:
        return self.arrays["frames"][self.context - 1]


def copy_last(ep: PhysicsEpisode) -> np.ndarray:
    return np.repeat(ep.last_context_frame[None], ep.horizon, axis=0)


def constant_velocity(ep: PhysicsEpisode, engine: Engine) -> np.ndarray:
    engine.reset(ep.spec)
    k = ep.context - 1
    pos, vel = ep.arrays["positions"][k], ep.arrays["velocities"][k]  # px, px/s
    fps = ep.spec.physics.fps
    out = []
    for s in range(1, ep.horizon + 1):
        engine.place_objects(pos + vel * s / fps)
        out.append(engine.render()[0])
    return np.stack(out)


def autoencoder(ep: PhysicsEpisode, ae: Any) -> np.ndarray:
    frames = ep.arrays["frames"]
    with torch.no_grad():
        video = to_model(frames)[None]
        t = ae.video_frames(ae.latent_frames(len(frames)))
        recon = ae.decode(ae.encode(video[:, :t]))[0]
    out = to_uint8(recon)
    if len(out) < len(frames):  # a temporal factor > 1 can leave the last frames out
        out = np.concatenate([out, np.repeat(out[-1:], len(frames) - len(out), 0)])
    return out[ep.context :]


def perturbed(spec: SceneSpec, seed: int, *, position: float = 1e-3, speed: float = 1e-3) -> SceneSpec:
    """The spec with each object moved ``position`` metres and its velocity scaled by
    1 +- ``speed``, in directions drawn from ``seed``."""
    rng = np.random.default_rng([seed, 7])
    objects = []
    for o in spec.objects:
        a = rng.uniform(0, 2 * np.pi)
        u, v = o.position[0] + position * np.cos(a), o.position[1] + position * np.sin(a)
        f = 1 + speed * rng.uniform(-1, 1)
        objects.append(dataclasses.replace(o, position=(u, v), velocity=(o.velocity[0] * f, o.velocity[1] * f)))
    return dataclasses.replace(spec, objects=tuple(objects))


def physical_variance(ep: PhysicsEpisode, engine: Engine) -> np.ndarray:
    arrays, _ = simulate(perturbed(ep.spec, ep.seed), engine, ep.actions)
    return arrays["frames"][ep.context :]


def other_engine(ep: PhysicsEpisode, engine: Engine) -> np.ndarray:
    arrays, _ = simulate(ep.spec, engine, ep.actions)
    return arrays["frames"][ep.context :]


@dataclass
class BaselineTools:
    """What the baselines need besides the episode: the episode's engine, the other
    engine and the model's autoencoder."""

    engine: Engine
    other: Engine
    autoencoder: Any


# name -> the frames (horizon, H, W, 3) it predicts for an episode
BASELINES: dict[str, Callable[[PhysicsEpisode, BaselineTools], np.ndarray]] = {
    "copy_last": lambda ep, tools: copy_last(ep),
    "constant_velocity": lambda ep, tools: constant_velocity(ep, tools.engine),
    "autoencoder": lambda ep, tools: autoencoder(ep, tools.autoencoder),
    "physical_variance": lambda ep, tools: physical_variance(ep, tools.engine),
    "other_engine": lambda ep, tools: other_engine(ep, tools.other),
}
