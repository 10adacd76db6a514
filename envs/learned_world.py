"""``LearnedWorld-v0``: the same worlds as ``PhysicsWorld-v0``, simulated by a trained
model; and its batched vector version (one model call steps every world)."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.checkpoint import world_checkpoint
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.sim.captions import caption_detailed
from worldsim.simulator import LearnedSimulator
from worldsim_envs._window import HumanWindow
from worldsim_envs.physics_world import EPISODE_FRAMES, PhysicsWorldEnv, check_action


class _Worlds:
    """N learned worlds stepped together, each started from its physics twin."""

    def __init__(self, n: int, *, checkpoint: str | None, scene: str, engine: str, context: int, split: str, scene_overrides: dict[str, Any] | None,
                 sampler_steps: int | None, text_scale: float, action_scale: float, window: int | None, device: str, precision: str,
                 episode_frames: int = EPISODE_FRAMES, observation: str = "frames", compile: bool = False):
        checkpoint = world_checkpoint(checkpoint)
        if context < 1:
            raise ValueError(f"context must be at least 1 frame, got {context}")
        sampler = SamplerConfig(steps=sampler_steps, text_scale=text_scale, action_scale=action_scale)
        self.sim = LearnedSimulator(checkpoint, device=device, precision=precision, sampler=sampler, window=window, compile=compile)
        res = f"{self.sim.height}x{self.sim.width}"
        if observation not in ("frames", "latents"):
            raise ValueError(f"observation must be frames (uint8 pictures) or latents (the model's own, undecoded), got {observation!r}")
        self.observation = observation
        self.twins = [PhysicsWorldEnv(scene, engine, res, split, scene_overrides, episode_frames=episode_frames) for _ in range(n)]
        self.context = context
        self.n = n
        self.captions = [""] * n
        self._warned = False

    def reset(self, rngs: list[np.random.Generator], options: list[dict[str, Any]], seeds: list[int | None]) -> np.ndarray:
        """Start every world: world i's physics twin is reset with ``seeds[i]`` (or a
        seed drawn from ``rngs[i]``), its sampler noise seeded from ``rngs[i]``."""
        frames, prompts, gens = [], [], []
        for opt in options:
            unknown = sorted(set(opt) - {"prompt", "frames", "scene"})
            if unknown:
                raise ValueError(f"LearnedWorld-v0 reset options are 'prompt', 'frames' and 'scene', got {unknown}")
        for twin, rng, opt, seed in zip(self.twins, rngs, options, seeds):
            given = opt.get("frames")
            if given is not None:
                clip = np.asarray(given)
                clip = clip[None] if clip.ndim == 3 else clip
            else:
                twin_seed = seed if seed is not None else int(rng.integers(2**62))
                obs, _ = twin.reset(seed=twin_seed, options={"scene": opt["scene"]} if "scene" in opt else None)
                clip = [obs]
                for _ in range(self.context - 1):  # the twin's first frames, under no command
                    clip.append(twin.step(np.zeros(2, np.float32))[0])
                clip = np.stack(clip)
            frames.append(clip[-self.context :])
            prompt = opt.get("prompt")
            if prompt is None:  # what the twin knows that its first frames do not show; given frames: no caption
                prompt = caption_detailed(twin.spec_, []) if given is None and twin.spec_ is not None else ""
            elif not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"options['prompt'] must be a description of the scene (a non-empty string), got {prompt!r}; "
                                 "leave it out to use the physics twin's description")
            prompts.append(prompt)
            gens.append(torch.Generator().manual_seed(int(rng.integers(2**62))))
        if len({f.shape for f in frames}) > 1:
            raise ValueError(f"every world needs the same number and size of context frames, got {[f.shape for f in frames]}")
        out = self.sim.reset(np.stack(frames), prompts, gens)
        self.captions = prompts  # once the reset took them: a refused one leaves the running episode as it was
        if self.observation == "latents":
            out = self.sim.current_latents()
        unknown = sorted({w for words in self.sim.unknown_words for w in words})
        if unknown and not self._warned:
            warnings.warn(f"the model does not know the prompt words {unknown}; it runs without them", stacklevel=3)
            self._warned = True
        return out

    def step(self, actions: np.ndarray) -> np.ndarray:
        return self.sim.step(actions, decode=self.observation == "frames")

    def space(self) -> gym.spaces.Box:
        """One world's observation space."""
        if self.observation == "latents":
            c, f = self.sim.ae.latent_channels, self.sim.ae.spatial_factor
            return gym.spaces.Box(-np.inf, np.inf, (c, self.sim.height // f, self.sim.width // f), np.float32)
        return gym.spaces.Box(0, 255, (self.sim.height, self.sim.width, 3), np.uint8)

    def close(self) -> None:
        for t in self.twins:
            t.close()


class LearnedWorldEnv(gym.Env):
    """
    ## Description

    A worldsim scene simulated by a trained video world model, one frame per step:
    the learned twin of ``PhysicsWorld-v0``, with the same spaces. By default a reset
    starts the physics twin with the same seed, takes its first ``context`` frames as
    the model's context and the twin's scene description (objects and hidden physical
    parameters, as words) as its prompt, so ``reset(seed=s)`` starts both twins in the
    same state (this one ``context - 1`` frames later).

    ## Action Space

    ``Box(-1, 1, (2,), float32)``, as ``PhysicsWorld-v0``: the agent's target
    velocity (x right, y up); scenes without an agent ignore it. Floats or integers are
    taken (as float32), finite values outside [-1, 1] clipped; a wrong shape, a
    non-numeric dtype, NaN or inf raises ``ValueError``.

    ## Observation Space

    ``Box(0, 255, (H, W, 3), uint8)`` at the model's resolution; with
    ``observation="latents"``, ``Box(-inf, inf, (C, h, w), float32)``: the model's latent
    frames, never decoded (for agents that learn on latents; rendering still shows
    pictures, decoded then).

    ## Rewards

    None: 0 every step.

    ## Starting State

    The last of the context frames: the physics twin's (see Description), or
    ``options["frames"]`` (K, H, W, 3) uint8, under ``options["prompt"]`` (without one,
    no caption: the twin's description is of its own frames, not these).

    ## Episode End

    Never terminated; truncated after ``max_episode_steps`` (registered as 200).

    ## Arguments

    ``gymnasium.make("worldsim:LearnedWorld-v0", checkpoint=PATH, scene="bouncing_balls",
    engine="pybullet", context=4, split="test", sampler_steps=None, text_scale=1.0,
    action_scale=1.0, window=None, device="auto", precision="auto", episode_frames=32,
    render_mode=None, compile=False)``; ``compile=True`` steps a ``torch.compile``-d DiT
    (one graph per kind of call, compiled at the first steps; eager where it cannot).
    One env on a CPU steps faster with ``compile=True`` (1.3-1.66x, after 60-85 s
    of compiling in the first process and 12-26 s in later ones, which find the
    kernels in Inductor's on-disk cache), as faithfully (docs/MODEL_CARD.md); where
    ``auto`` picks bf16 (a CPU with native bf16), ``precision="fp32"`` steps one env
    0.93-1.2x as fast (with fp32's numerics; batches want bf16): README, "Benchmarks:
    the model".
    ``episode_frames`` as for ``PhysicsWorld-v0`` (the twin's).
    ``reset(seed=..., options={"prompt": str, "frames": array, "scene": name})``.
    ``info`` holds the ``caption`` used and the prompt's ``unknown_words`` (the
    model runs without them, with one warning).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(
        self,
        checkpoint: str | None = None,
        scene: str = "bouncing_balls",
        engine: str = "pybullet",
        context: int = 4,
        split: str = "test",
        scene_overrides: dict[str, Any] | None = None,
        sampler_steps: int | None = None,
        text_scale: float = 1.0,
        action_scale: float = 1.0,
        window: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        render_mode: str | None = None,
        episode_frames: int = EPISODE_FRAMES,
        observation: str = "frames",
        compile: bool = False,
    ):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.worlds = _Worlds(
            1, checkpoint=checkpoint, scene=scene, engine=engine, context=context, split=split, scene_overrides=scene_overrides,
            sampler_steps=sampler_steps, text_scale=text_scale, action_scale=action_scale, window=window, device=device, precision=precision,
            episode_frames=episode_frames, observation=observation, compile=compile,
        )
        self.observation_space = self.worlds.space()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.metadata = {**self.metadata, "render_fps": self.worlds.sim.fps}
        self.render_mode = render_mode
        self._frame: np.ndarray | None = None
        self._window = HumanWindow("LearnedWorld")
        self._steps = 0
        self._closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if self._closed:
            raise gym.error.ClosedEnvironmentError("this LearnedWorld-v0 is closed; make a new one with gymnasium.make")
        super().reset(seed=seed)
        self._frame = self.worlds.reset([self.np_random], [dict(options or {})], [seed])[0]
        self._steps = 0
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._closed:
            raise gym.error.ClosedEnvironmentError("this LearnedWorld-v0 is closed; make a new one with gymnasium.make")
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        a = check_action(action, self.action_space)
        self._frame = self.worlds.step(a[None])[0]
        self._steps += 1
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), 0.0, False, False, self._info()

    def _info(self) -> dict[str, Any]:
        return {"caption": self.worlds.captions[0], "unknown_words": list(self.worlds.sim.unknown_words[0]), "frame": self._steps}

    def render(self) -> np.ndarray | None:
        if self._frame is None:
            return None
        frame = self._frame if self.worlds.observation == "frames" else self.worlds.sim.pictures()[0]
        if self.render_mode == "human":
            self._window.show(frame, self.metadata["render_fps"])
            return None
        return frame.copy()

    def close(self) -> None:
        self._window.close()
        self.worlds.close()
        self._closed = True


class LearnedWorldVectorEnv(gym.vector.VectorEnv):
    """``gymnasium.make_vec("worldsim:LearnedWorld-v0", num_envs=N)``: N learned worlds,
    stepped by one batched model call. Env i reset with ``seed + i`` equals a single
    LearnedWorld-v0 reset with that seed.

    Autoreset mode NEXT_STEP (Gymnasium's default): after the step where an episode
    ends (at ``max_episode_steps``, for every world at once, since none terminates),
    the next ``step`` resets the worlds and returns their first observations with
    reward 0 and no termination or truncation.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = 200, render_mode: str | None = None, **kwargs: Any):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a whole number of worlds, at least 1, got {num_envs!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r} "
                             "(a window shows one world: gymnasium.make, not make_vec)")
        self.num_envs = int(num_envs)
        self.worlds = _Worlds(
            num_envs,
            checkpoint=kwargs.pop("checkpoint", None),
            scene=kwargs.pop("scene", "bouncing_balls"),
            engine=kwargs.pop("engine", "pybullet"),
            context=kwargs.pop("context", 4),
            split=kwargs.pop("split", "test"),
            scene_overrides=kwargs.pop("scene_overrides", None),
            sampler_steps=kwargs.pop("sampler_steps", None),
            text_scale=kwargs.pop("text_scale", 1.0),
            action_scale=kwargs.pop("action_scale", 1.0),
            window=kwargs.pop("window", None),
            device=kwargs.pop("device", "auto"),
            precision=kwargs.pop("precision", "auto"),
            episode_frames=kwargs.pop("episode_frames", EPISODE_FRAMES),
            observation=kwargs.pop("observation", "frames"),
            compile=kwargs.pop("compile", False),
        )
        if kwargs:
            raise TypeError(f"unknown arguments {sorted(kwargs)}")
        self.single_observation_space = self.worlds.space()
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self._rngs: list[np.random.Generator] = []
        self._frames: np.ndarray | None = None
        self._steps = 0
        self._needs_reset = False
        self._closed = False

    def _require_open(self) -> None:
        if self._closed:
            raise gym.error.ClosedEnvironmentError("this LearnedWorld-v0 vector env is closed; make a new one with gymnasium.make_vec")

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._require_open()
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=[...]) needs one seed for each of the {self.num_envs} worlds, got {len(seeds)}")
            if not all(s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool)) for s in seeds):
                raise ValueError(f"reset(seed=[...]) takes whole numbers (or None), got {seeds!r}")
            seeds = [None if s is None else int(s) for s in seeds]  # numpy integers too (np.arange(n) + 10, say)
        if seed is not None or not self._rngs:
            # the same generator gymnasium.Env.reset(seed=s) makes for a single env:
            self._rngs = [gym.utils.seeding.np_random(s)[0] for s in seeds]
        per_env = [dict(options or {}) for _ in range(self.num_envs)]
        self._frames = self.worlds.reset(self._rngs, per_env, seeds)
        self._steps = 0
        self._needs_reset = False
        # a vector env's info: each key an array over the worlds, with its "_key" mask (which worlds it holds: all of them here)
        return self._frames.copy(), {"caption": np.array(self.worlds.captions, dtype=object), "_caption": np.ones(self.num_envs, bool)}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._require_open()
        n = self.num_envs
        if self._frames is None:
            raise RuntimeError("call reset() before step()")
        if self._needs_reset:
            obs, info = self.reset()
            return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), info
        a = np.asarray(actions)
        if a.shape != self.action_space.shape:
            raise ValueError(f"actions must be a {self.action_space} (float32 of shape {self.action_space.shape}), got shape {a.shape}")
        a = np.stack([check_action(x, self.single_action_space) for x in a])
        self._frames = self.worlds.step(a)
        self._steps += 1
        truncated = np.full(n, self.max_episode_steps is not None and self._steps >= self.max_episode_steps)
        self._needs_reset = bool(truncated.any())
        return self._frames.copy(), np.zeros(n), np.zeros(n, bool), truncated, {}

    def render(self) -> np.ndarray | None:
        if self._frames is None:
            return None
        return self._frames.copy() if self.worlds.observation == "frames" else self.worlds.sim.pictures()

    def close_extras(self, **kwargs: Any) -> None:
        self.worlds.close()
        self._closed = True
