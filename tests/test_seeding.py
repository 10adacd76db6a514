"""One seeding scheme across data and environments: a stored episode, the environment
reset with its seed, and a comparison on fresh episodes are the same worlds."""

import json

import gymnasium
import numpy as np
import pytest

import worldsim  # noqa: F401  (registers the environments)
from worldsim.data.episode import load_episode
from worldsim.data.generation import StreamConfig, generate_stream
from worldsim.evaluate.compare import CompareConfig, run_compare
from worldsim.sim.engines import EngineConfig
from worldsim.sim.scenes import scene_config


@pytest.mark.parametrize("scene", ["occlusion", "push"])
def test_a_stored_episode_is_the_environment_reset_with_its_seed(scene, tmp_path):
    """occlusion times its screens by the episode length, push draws actions after the
    spec: both must agree for the worlds to be the same."""
    rows = generate_stream(StreamConfig(scene=scene_config(scene), engine=EngineConfig("pybullet"), episodes=2, frames=10, split="test"),
                           tmp_path, progress=False)
    for row in rows:
        ep = load_episode(tmp_path / row["path"])
        env = gymnasium.make("PhysicsWorld-v0", scene=scene, split=row["split"], episode_frames=row["num_frames"])
        obs, _ = env.reset(seed=row["seed"])
        frames = [obs] + [env.step(a)[0] for a in ep["actions"][1:]]
        env.close()
        np.testing.assert_array_equal(np.stack(frames), ep["frames"])


def test_compare_on_stored_episodes_equals_compare_on_fresh_ones(tiny_world, tmp_path):
    """compare data=DIR scores the stored test episodes; without data it simulates the
    same episodes (those generate would store with the same seed and frames)."""
    data = tmp_path / "data"
    generate_stream(StreamConfig(scene=scene_config("bouncing_balls"), engine=EngineConfig("pybullet"), episodes=2, frames=6,
                                 resolution=(32, 32), split="test", seed=3), data, progress=False)
    common = dict(checkpoint=str(tiny_world), scene="bouncing_balls", episodes=2, horizon=4, context=2, seed=3, baselines=["copy_last"],
                  sampler_steps=1, videos=1, device="cpu", precision="fp32")
    stored = run_compare(CompareConfig(**common, data=str(data), out=str(tmp_path / "stored")))
    fresh = run_compare(CompareConfig(**common, out=str(tmp_path / "fresh")))
    assert json.dumps(stored["model"], sort_keys=True) == json.dumps(fresh["model"], sort_keys=True)
    assert stored["summary"] == fresh["summary"]


def test_compare_says_when_the_data_holds_too_few_episodes(tiny_world, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="holds 2 test episodes of bouncing_balls"):
        run_compare(CompareConfig(checkpoint=str(tiny_world), data=str(tiny_data), episodes=5, horizon=4, context=2, baselines=["copy_last"],
                                  out=str(tmp_path), device="cpu", precision="fp32"))
