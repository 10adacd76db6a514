"""Scene configs (parameter ranges) and the samplers that draw specs from them."""

from __future__ import annotations

from typing import Any

from worldsim.sim.scenes.base import SPLITS, ConfigError, SceneConfig, episode_seed, parse_resolution
from worldsim.sim.scenes.bouncing_balls import BouncingBallsConfig
from worldsim.sim.scenes.occlusion import OcclusionConfig
from worldsim.sim.scenes.push import PushConfig
from worldsim.sim.scenes.shatter import ShatterConfig

SCENES: dict[str, type[SceneConfig]] = {
    BouncingBallsConfig.name: BouncingBallsConfig,
    ShatterConfig.name: ShatterConfig,
    OcclusionConfig.name: OcclusionConfig,
    PushConfig.name: PushConfig,
}


def scene_config(name: str, **ranges: Any) -> SceneConfig:
    """A scene config by name, with any ranges overridden (``scene_config("bouncing_balls", num_balls=[2, 2])``)."""
    try:
        cls = SCENES[name]
    except KeyError:
        raise ConfigError(f"unknown scene {name!r}; valid scenes: {', '.join(SCENES)}") from None
    try:
        return cls(**ranges)
    except TypeError as e:
        raise ConfigError(f"scene {name!r}: {e}") from None


__all__ = [
    "SCENES",
    "SPLITS",
    "BouncingBallsConfig",
    "ConfigError",
    "OcclusionConfig",
    "PushConfig",
    "SceneConfig",
    "ShatterConfig",
    "episode_seed",
    "parse_resolution",
    "scene_config",
]
