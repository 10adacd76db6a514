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


def test_given_frames_without_a_prompt_run_uncaptioned_whatever_came_before(tiny_world):
    """options['frames'] without a prompt: no caption, as in a fresh env (not the
    description of the physics twin's last, unrelated episode)."""
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    fresh = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    assert "ball" in env.reset(seed=1)[1]["caption"]
    after, info = env.reset(seed=2, options={"frames": frames})
    first, fresh_info = fresh.reset(seed=2, options={"frames": frames})
    assert info["caption"] == fresh_info["caption"] == ""
    a = np.array([0.5, -0.5], np.float32)
    assert np.array_equal(env.step(a)[0], fresh.step(a)[0])


def test_a_refused_reset_leaves_the_running_episode_and_its_info(tiny_world):
    env = gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2)
    _, info = env.reset(seed=1)
    with pytest.raises(ValueError):
        env.reset(options={"frames": np.zeros((2, 16, 16, 3), np.uint8), "prompt": "a red cube"})  # the wrong size
    _, _, _, _, after = env.step(np.zeros(2, np.float32))
    assert after["caption"] == info["caption"]
    after["unknown_words"].append("zzz")  # the caller's own list
    assert "zzz" not in env.unwrapped.worlds.sim.unknown_words[0]


def test_the_vector_env_refuses_what_it_cannot_do(tiny_world):
    def make(**kw):
        return gymnasium.make_vec("worldsim:LearnedWorld-v0", checkpoint=str(tiny_world), context=2, **kw)

    for bad, message in (({"num_envs": 0}, "num_envs"), ({"num_envs": 2, "render_mode": "human"}, "render_mode")):
        with pytest.raises(ValueError, match=message):
            make(**bad)
    venv = make(num_envs=3)
    with pytest.raises(ValueError, match="one seed for each of the 3 worlds, got 2"):
        venv.reset(seed=[1, 2])
    a, info = venv.reset(seed=np.int64(7))  # a numpy integer is a seed too
    assert info["_caption"].tolist() == [True] * 3 and len(info["caption"]) == 3  # Gymnasium's vector info: a mask beside each key
    b, _ = venv.reset(seed=7)
    c, _ = venv.reset(seed=np.arange(3) + 7)  # an array of seeds, one a world
    assert np.array_equal(a, b) and np.array_equal(a, c)
    venv.close()
    with pytest.raises(gymnasium.error.ClosedEnvironmentError):
        venv.step(np.zeros((3, 2), np.float32))


def test_a_scene_spec_given_at_reset_is_checked(tiny_world):
    env = gymnasium.make("PhysicsWorld-v0")
    _, info = env.reset(seed=0)
    spec = info["spec"].to_dict()
    obs, _ = env.reset(options={"scene": spec})  # the same spec: fine
    assert obs.shape == (64, 64, 3)
    spec["camera"] = {**spec["camera"], "height": 32, "width": 48}
    with pytest.raises(ValueError, match="renders 32x48 frames; this env's observations are 64x64"):
        env.reset(options={"scene": spec})
    with pytest.raises(ValueError, match=r"options\['scene'\] is not a whole scene spec"):
        env.reset(options={"scene": {"objects": []}})
    env.close()


def test_the_envs_import_no_plotting_until_a_window_is_shown():
    code = "import sys, worldsim_envs.physics_world, worldsim_envs.learned_world; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
