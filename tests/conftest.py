"""Shared fixtures: tiny specs and a tiny generated folder, made once per session."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

ENGINES = ("pybullet", "mujoco")


@pytest.fixture(scope="session")
def engines():
    """One engine of each kind, shared by the whole session (they are reset per use)."""
    from worldsim.sim.engines import make_engine

    made = {name: make_engine(name) for name in ENGINES}
    yield made
    for e in made.values():
        e.close()


@pytest.fixture
def ball_spec():
    """One ball falling from rest, factory: ball_spec(e=0.8, v=(0, 0), ...)."""
    from worldsim.sim.spec import CameraSpec, ObjectSpec, PhysicsSpec, SceneSpec

    def make(e=0.8, v=(0.0, 0.0), pos=(1.0, 1.5), gravity=9.81, frames=24, radius=0.15, size=64, mass=1.0):
        ball = ObjectSpec(
            name="ball0", shape="sphere", size=(radius, radius), colour="red", mass=mass, restitution=e, friction=0.3,
            position=pos, velocity=v,
        )
        return SceneSpec(
            scene="test", num_frames=frames, camera=CameraSpec(height=size, width=size), physics=PhysicsSpec(gravity=gravity),
            objects=(ball,),
        )

    return make


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A generated folder: 6 train + 2 test episodes of 12 frames at 32x32 (PyBullet)."""
    from worldsim.data.generation import StreamConfig, generate_stream
    from worldsim.sim.engines import EngineConfig
    from worldsim.sim.scenes import scene_config

    root = tmp_path_factory.mktemp("tiny_data")
    for split, n in (("train", 6), ("test", 2)):
        stream = StreamConfig(
            scene=scene_config("bouncing_balls"), engine=EngineConfig("pybullet"), episodes=n, frames=12, resolution=(32, 32), split=split
        )
        generate_stream(stream, root, progress=False)
    return root


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def tiny_world(tiny_data, tmp_path_factory):
    """A DiT run trained for 2 steps on tiny_data (pixel space, 32x32): weights that
    are barely trained but real, for testing everything that loads a world model."""
    from worldsim.training.loop import OptimConfig, TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_world")
    cfg = TrainConfig(
        stage="dit", data=str(tiny_data), out=str(out), max_steps=2, batch_size=2, clip_frames=4, num_workers=0,
        checkpoint_every=2, sample_every=1000, optim=OptimConfig(lr=1e-3, warmup_steps=1, ema=0.5),
        stage_options={"model": {"dim": 32, "depth": 2, "heads": 2, "patch": [1, 8, 8]}, "text": {"dim": 16, "depth": 1, "heads": 2},
                       "autoencoder": "identity"},
    )
    train(cfg)
    return out
