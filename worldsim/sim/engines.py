"""The engines by name: ``make_engine("pybullet" | "mujoco")`` and the config that
names one (conf/engine/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worldsim.sim.engine import Engine

ENGINES = ("pybullet", "mujoco")


@dataclass
class EngineConfig:
    """Which engine and its options (conf/engine/*.yaml)."""

    name: str = "pybullet"
    options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"unknown engine {self.name!r}; valid engines: {', '.join(ENGINES)}")

    def make(self) -> Engine:
        return make_engine(self.name, **(self.options or {}))


def make_engine(name: str, **options: Any) -> Engine:
    """An engine by name: ``"pybullet"`` or ``"mujoco"``.

    Each backend is imported when it is chosen, so that a machine without one of the
    two libraries (PyBullet has no binary wheel for some Pythons) still runs the other.
    """
    if name == "pybullet":
        from worldsim.sim.pybullet import PyBulletEngine

        return PyBulletEngine(**options)
    if name == "mujoco":
        from worldsim.sim.mujoco import MuJoCoEngine

        return MuJoCoEngine(**options)
    raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join(ENGINES)}")
