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
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldsim.sim.engine import Engine
from worldsim.sim.simulate import simulate
from worldsim.sim.spec import SceneSpec

BASELINES = ("copy_last", "constant_velocity", "autoencoder", "physical_variance", "other_engine")


@dataclass
class PhysicsEpisode:
    """A ground-truth episode of ``context + horizon`` frames."""

    spec: SceneSpec
    arrays: dict[str, np.ndarray]
    events: list[dict[str, Any]]
    context: int
    seed: int

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
    import torch

    frames = ep.arrays["frames"]
    with torch.no_grad():
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)[None]
        t = ae.video_frames(ae.latent_frames(len(frames)))
        recon = ae.decode(ae.encode(video[:, :t]))[0]
    out = ((recon.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
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
