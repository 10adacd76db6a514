"""The Gymnasium twins: registration, Gymnasium's checker, determinism, vector envs."""

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim  # noqa: F401  (registers the ids)


@pytest.mark.parametrize("scene, engine", [("bouncing_balls", "pybullet"), ("push", "mujoco"), ("shatter", "pybullet")])
def test_physics_world_passes_the_checker(scene, engine):
    env = gymnasium.make("PhysicsWorld-v0", scene=scene, engine=engine)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=5)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert {"caption", "positions", "velocities", "visible_pixels", "events"} <= set(info)
    env.close()


def test_learned_world_passes_the_checker_and_shares_the_spaces(tiny_world):
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=3)
    check_env(env.unwrapped)
    twin = gymnasium.make("PhysicsWorld-v0", resolution=32)
    assert env.observation_space == twin.observation_space and env.action_space == twin.action_space
    obs, info = env.reset(seed=1)
    assert "balls" in info["caption"] or "ball" in info["caption"]
    # the learned world starts from the physics twin's first frames (same seed)
    pobs, _ = twin.reset(seed=1)
    for _ in range(2):
        pobs = twin.step(np.zeros(2, np.float32))[0]
    assert np.array_equal(obs, pobs)
    env.close()


def test_compile_reaches_the_simulator_of_single_and_vector_envs(tiny_world):
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2, compile=True)
    venv = gymnasium.make_vec("worldsim:LearnedWorld-v0", num_envs=2, checkpoint=str(tiny_world), context=2, compile=True)
    plain = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    assert env.unwrapped.worlds.sim.compiled and venv.unwrapped.worlds.sim.compiled  # compiled lazily, at the first step
    assert not plain.unwrapped.worlds.sim.compiled
    for e in (env, venv, plain):
        e.close()


def test_the_same_seed_gives_the_same_learned_rollout(tiny_world):
    def run(seed):
        env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
        frames = [env.reset(seed=seed)[0]]
        for a in np.linspace(-1, 1, 6):
            frames.append(env.step(np.array([a, -a], np.float32))[0])
        return np.stack(frames)

    assert np.array_equal(run(4), run(4))
    assert not np.array_equal(run(4)[1:], run(5)[1:])


def test_make_vec_equals_single_envs(tiny_world):
    n = 3
    venv = gymnasium.make_vec("worldsim:LearnedWorld-v0", num_envs=n, checkpoint=str(tiny_world), context=2)
    assert venv.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=10)
    actions = np.random.default_rng(0).uniform(-1, 1, (4, n, 2)).astype(np.float32)
    batched = [obs] + [venv.step(a)[0] for a in actions]
    for i in range(n):
        env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
        single = [env.reset(seed=10 + i)[0]] + [env.step(a[i])[0] for a in actions]
        for t, frame in enumerate(single):
            assert np.abs(frame.astype(int) - batched[t][i]).max() <= 1, (i, t)


def test_vector_env_autoresets_on_the_next_step(tiny_world):
    venv = gymnasium.make_vec("worldsim:LearnedWorld-v0", num_envs=2, checkpoint=str(tiny_world), context=2, max_episode_steps=2)
    first, _ = venv.reset(seed=0)
    a = np.zeros((2, 2), np.float32)
    assert not venv.step(a)[3].any()
    assert venv.step(a)[3].all()  # truncated at 2 steps
    obs, reward, term, trunc, _ = venv.step(a)  # the reset step
    assert not trunc.any() and not term.any() and not reward.any()


def test_bad_actions_raise_naming_the_space(tiny_world):
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    env.reset(seed=0)
    for bad in (np.array([np.nan, 0.0], np.float32), np.array([np.inf, 0], np.float32), np.zeros(3, np.float32), "left"):
        with pytest.raises(ValueError, match="Box"):
            env.step(bad)
    physics = gymnasium.make("PhysicsWorld-v0")
    physics.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        physics.step(np.array([0.0, np.nan], np.float32))


def test_learned_world_without_a_checkpoint_says_what_to_pass(monkeypatch):
    import worldsim.checkpoint

    monkeypatch.setattr(worldsim.checkpoint, "reference_checkpoint", lambda: None)  # an install without the bundled model
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        gymnasium.make("worldsim:LearnedWorld-v0")


def test_ids_resolve_from_a_bare_interpreter():
    code = "import gymnasium; env = gymnasium.make('worldsim:PhysicsWorld-v0', scene='occlusion'); print(env.reset(seed=0)[0].shape)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(64, 64, 3)" in r.stdout
