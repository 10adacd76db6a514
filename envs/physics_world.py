"""``PhysicsWorld-v0``: a worldsim scene simulated by PyBullet or MuJoCo."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.sim.captions import caption_detailed
from worldsim.sim.engines import make_engine
from worldsim.sim.scenes import scene_config
from worldsim.sim.scenes.base import parse_resolution
from worldsim.sim.spec import SceneSpec
from worldsim_envs._window import HumanWindow

# The episode length a spec is drawn for by default: what python -m worldsim.generate
# writes (frames=32). A spec depends on it (the occlusion scene times its screens by
# it), so the environment and a stored episode are the same world only with the same
# length. Stepping may go on past it (up to max_episode_steps).
EPISODE_FRAMES = 32


def check_action(action: Any, space: gym.spaces.Box) -> np.ndarray:
    """The action as float32: any real numbers of the space's shape (floats or
    integers, e.g. ``[1, 0]``), finite values outside the space clipped into it;
    ValueError naming the expected space for a wrong shape, a non-numeric dtype
    (booleans, strings, objects), NaN or inf."""
    a = np.asarray(action)
    numeric = (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)) and a.dtype != np.bool_
    if a.shape != space.shape or not numeric:
        raise ValueError(f"action must be a {space} (real numbers of shape {space.shape}), got {a.dtype} of shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action {a} holds NaN or inf; the action space is {space}")
    return np.clip(a.astype(np.float32), space.low, space.high)


class PhysicsWorldEnv(gym.Env):
    """
    ## Description

    A worldsim scene (``bouncing_balls``, ``shatter``, ``occlusion``, ``push``)
    simulated by PyBullet or MuJoCo and rendered to flat-coloured frames: the ground
    truth that ``LearnedWorld-v0`` learned from, with the same spaces, so the two are
    interchangeable and a comparison is a loop over the same actions.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: the agent's target velocity, x right and y up,
    times 1.5 m/s (see :class:`worldsim.sim.spec.AgentSpec`). Scenes without an agent
    (``scene_overrides={"agent": True}`` adds one) ignore it. Floats or integers are
    taken (as float32), finite values outside [-1, 1] clipped; a wrong shape, a
    non-numeric dtype, NaN or inf raises ``ValueError``.

    ## Observation Space

    ``Box(0, 255, (H, W, 3), uint8)``: the rendered frame (64x64 by default).

    ## Rewards

    None: 0 every step. worldsim simulates worlds; tasks are up to their users.

    ## Starting State

    A scene spec drawn from the scene's ranges with the environment's ``np_random``
    (so ``reset(seed=s)`` fixes it), in the ``split``'s ranges, for an episode of
    ``episode_frames``. Episode seeds are shared with stored data: a generated
    episode (``manifest.jsonl``: ``seed``, ``split``, ``num_frames``) is the world
    ``reset(seed=seed)`` starts with ``split=split, episode_frames=num_frames``, and
    stepping it with the episode's ``actions[1:]`` gives its frames.

    ## Episode End

    Never terminated; truncated after ``max_episode_steps`` (registered as 200).

    ## Arguments

    ``gymnasium.make("PhysicsWorld-v0", scene="push", engine="mujoco", resolution=64,
    split="test", scene_overrides=None, episode_frames=32, render_mode=None)``.
    ``reset(seed=..., options={"scene": name or spec dict})``. ``info`` holds the
    detailed ``caption``, the ``spec``, per-object ``positions`` (pixels) and
    ``velocities`` (pixels/s), ``visible_pixels`` and the ``events`` so far.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(
        self,
        scene: str = "bouncing_balls",
        engine: str = "pybullet",
        resolution: int | str = 64,
        split: str = "test",
        scene_overrides: dict[str, Any] | None = None,
        render_mode: str | None = None,
        episode_frames: int = EPISODE_FRAMES,
    ):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.scene_name = scene
        self.scene_overrides = dict(scene_overrides or {})
        self.scene = scene_config(scene, **self.scene_overrides)
        self.engine_name = engine
        self.engine = make_engine(engine)
        self.resolution = parse_resolution(resolution)
        self.split = split
        if int(episode_frames) < 1:
            raise ValueError(f"episode_frames must be at least 1, got {episode_frames}")
        self.episode_frames = int(episode_frames)
        self.render_mode = render_mode
        h, w = self.resolution
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.metadata = {**self.metadata, "render_fps": self.scene.fps}
        self.spec_: SceneSpec | None = None
        self._frame: np.ndarray | None = None
        self._window = HumanWindow(f"PhysicsWorld: {self.scene_name} ({self.engine_name})")
        self._closed = False

    def sample_spec(self, rng: np.random.Generator, scene: Any = None) -> SceneSpec:
        """The spec a reset with this generator starts from (what LearnedWorld's twin uses)."""
        if isinstance(scene, dict):
            try:
                spec = SceneSpec.from_dict(scene)
            except (KeyError, TypeError) as e:
                raise ValueError(f"options['scene'] is not a whole scene spec ({type(e).__name__}: {e}); pass a scene name, or a dict "
                                 "from SceneSpec.to_dict() (info['spec'] of an earlier reset, edited)") from None
            if (spec.camera.height, spec.camera.width) != tuple(self.resolution):
                h, w = self.resolution
                raise ValueError(f"options['scene'] renders {spec.camera.height}x{spec.camera.width} frames; this env's observations are "
                                 f"{h}x{w}: set its camera's height and width to that, or make the env with resolution="
                                 f"'{spec.camera.height}x{spec.camera.width}'")
            return spec
        cfg = self.scene if scene is None else scene_config(scene, **self.scene_overrides)
        return cfg.sample(rng, num_frames=self.episode_frames, resolution=self.resolution, split=self.split)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._require_open()
        super().reset(seed=seed)
        options = options or {}
        unknown = sorted(set(options) - {"scene"})
        if unknown:
            raise ValueError(f"PhysicsWorld-v0 reset options take only 'scene' (a name or a spec dict), got {unknown}"
                             + ("; 'prompt' and 'frames' are LearnedWorld-v0's" if {"prompt", "frames"} & set(unknown) else ""))
        self.spec_ = self.sample_spec(self.np_random, options.get("scene"))
        self.engine.reset(self.spec_)
        self._frame, ids = self.engine.render()
        self._ids = ids
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), self._info()

    def _require_open(self) -> None:
        if self._closed:
            raise gym.error.ClosedEnvironmentError("this PhysicsWorld-v0 is closed; make a new one with gymnasium.make")

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._require_open()
        if self.spec_ is None:
            raise RuntimeError("call reset() before step()")
        a = check_action(action, self.action_space)
        self.engine.step(a)
        self._frame, self._ids = self.engine.render()
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), 0.0, False, False, self._info()

    def _info(self) -> dict[str, Any]:
        assert self.spec_ is not None
        st = self.engine.state()
        n = len(self.spec_.objects)
        visible = np.bincount(self._ids.ravel(), minlength=n + 1)[1 : n + 1]
        events = self.engine.events(final=False)
        return {
            "caption": caption_detailed(self.spec_, events),
            "spec": self.spec_,
            "positions": st["positions"],
            "velocities": st["velocities"],
            "visible_pixels": visible,
            "events": events,
            "frame": self.engine.frame,
        }

    def render(self) -> np.ndarray | None:
        if self._frame is None:
            return None
        if self.render_mode == "human":
            self._window.show(self._frame, self.metadata["render_fps"])
            return None
        return self._frame.copy()

    def close(self) -> None:
        self._window.close()
        self.engine.close()
        self._closed = True
