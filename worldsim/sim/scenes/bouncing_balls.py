"""``bouncing_balls``: a few balls thrown inside a walled box, seen from the side."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from worldsim.sim import palette
from worldsim.sim.scenes.base import (
    ConfigError,
    Range,
    SceneConfig,
    Words,
    check_range,
    check_words,
    integer,
    place_discs,
    random_direction,
    uniform,
    word,
)
from worldsim.sim.spec import CameraSpec, ObjectSpec, PhysicsSpec, SceneSpec


def _default_colours() -> list[str]:
    return list(palette.OBJECT_COLOURS)


@dataclass
class BouncingBallsConfig(SceneConfig):
    """Ranges of the bouncing-balls scene (see conf/scene/bouncing_balls.yaml)."""

    name: ClassVar[str] = "bouncing_balls"
    ood_keys: ClassVar[tuple[str, ...]] = ("num_balls", "speed")

    num_balls: Range = field(default_factory=lambda: [1, 3])
    radius: Words = field(default_factory=lambda: {"small": [0.09, 0.12], "large": [0.15, 0.2]})  # m, by word
    speed: Range = field(default_factory=lambda: [0.5, 4.0])  # m/s, initial, random direction
    restitution: Words = field(
        default_factory=lambda: {"dead": [0.1, 0.3], "bouncy": [0.55, 0.75], "very bouncy": [0.88, 0.98]}
    )
    mass: Words = field(default_factory=lambda: {"light": [0.2, 0.5], "heavy": [2.0, 5.0]})  # kg
    friction: Range = field(default_factory=lambda: [0.2, 0.6])
    colours: list[str] = field(default_factory=_default_colours)
    gravity: Words = field(
        default_factory=lambda: {"zero": [0.0, 0.0], "low": [2.0, 4.0], "normal": [9.81, 9.81], "high": [15.0, 20.0]}
    )
    ood: dict = field(default_factory=lambda: {"num_balls": [4, 5], "speed": [4.5, 6.0]})
    held_out_looks: list = field(default_factory=lambda: [["red", "large"], ["blue", "small"], ["yellow", "large"]])

    def __post_init__(self) -> None:
        check_range("scene.num_balls", self.num_balls, lo=1, integer=True)
        check_words("scene.radius", self.radius, lo=1e-3)
        check_range("scene.speed", self.speed, lo=0.0)
        check_range("scene.friction", self.friction, lo=0.0)
        check_words("scene.restitution", self.restitution, lo=0.0, hi=1.0)
        check_words("scene.mass", self.mass, lo=1e-3)
        for c in self.colours:
            if c not in palette.OBJECT_COLOURS:
                raise ConfigError(f"scene.colours: {c!r} is not an object colour; valid: {list(palette.OBJECT_COLOURS)}")
        super().__post_init__()
        for split_cfg in (self, self.for_split("ood")):
            if int(split_cfg.num_balls[1]) > len(self.colours):  # type: ignore[attr-defined]
                raise ConfigError(
                    f"scene.num_balls allows {int(split_cfg.num_balls[1])} balls but scene.colours has only "  # type: ignore[attr-defined]
                    f"{len(self.colours)}: every ball needs its own colour"
                )

    def _validate_geometry(self, resolution: tuple[int, int]) -> None:
        h, w = resolution
        box_w, box_h = self.box_height * w / h, self.box_height
        r = max(float(x[1]) for x in self.radius.values())
        if 2 * r >= min(box_w, box_h):
            raise ConfigError(
                f"scene.radius: a ball of radius {r} m does not fit in the {box_w:.2f} x {box_h:.2f} m box; "
                f"use a radius below {min(box_w, box_h) / 2:.2f}"
            )
        n = int(self.num_balls[1])
        if n * math.pi * (r + 0.02) ** 2 > 0.4 * box_w * box_h:
            raise ConfigError(
                f"scene.num_balls / scene.radius: {n} balls of radius up to {r} m cannot be placed apart in a "
                f"{box_w:.2f} x {box_h:.2f} m box; use fewer or smaller balls"
            )

    def _sample(
        self,
        rng: np.random.Generator,
        *,
        camera: CameraSpec,
        physics: PhysicsSpec,
        num_frames: int,
        labels: dict[str, str],
        split: str,
    ) -> SceneSpec:
        n = integer(rng, self.num_balls)
        colours: list[str] = []
        radii: list[float] = []
        for i in range(n):
            c, sname, r = self.look(rng, self.colours, self.radius, set(colours), first=i == 0, split=split)
            colours.append(c)
            radii.append(r)
            labels[f"ball{i}.size"] = sname
        centres = place_discs(rng, radii, (camera.box_width, camera.box_height))
        objects = []
        for i in range(n):
            rname, e = word(rng, self.restitution)
            mname, m = word(rng, self.mass)
            speed = uniform(rng, self.speed)
            du, dv = random_direction(rng)
            name = f"ball{i}"
            objects.append(
                ObjectSpec(
                    name=name,
                    shape="sphere",
                    size=(radii[i], radii[i]),
                    colour=colours[i],
                    mass=m,
                    restitution=e,
                    friction=uniform(rng, self.friction),
                    position=centres[i],
                    velocity=(speed * du, speed * dv),
                )
            )
            labels[f"{name}.restitution"] = rname
            labels[f"{name}.mass"] = mname
        return SceneSpec(
            scene=self.name, num_frames=num_frames, camera=camera, physics=physics, objects=tuple(objects), labels=labels
        )
