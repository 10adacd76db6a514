"""``push``: an agent disc pushes objects across a floor, seen from above.

Actions are the agent's target velocity (see :class:`worldsim.sim.spec.AgentSpec`);
objects slide with Coulomb friction against the floor, whose roughness is hidden
(``slippery`` / ``rough``) along with their masses. Actions come from an
Ornstein-Uhlenbeck process or a scripted policy that pushes one object toward a
goal region (``actions=mixed`` draws either, half the time each).
"""

from __future__ import annotations

import dataclasses
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
    word,
)
from worldsim.sim.spec import AgentSpec, CameraSpec, ObjectSpec, PhysicsSpec, SceneSpec


@dataclass
class PushConfig(SceneConfig):
    """Ranges of the push scene (see conf/scene/push.yaml)."""
    name: ClassVar[str] = "push"
    view: ClassVar[str] = "top"
    ood_keys: ClassVar[tuple[str, ...]] = ("num_objects",)

    num_objects: Range = field(default_factory=lambda: [1, 3])  # passive objects besides the agent
    box_probability: float = 0.5  # how often an object is a box rather than a ball (a disc from above)
    size: Words = field(default_factory=lambda: {"small": [0.08, 0.1], "large": [0.13, 0.16]})  # m: radius or half side
    mass: Words = field(default_factory=lambda: {"light": [0.3, 0.6], "heavy": [1.5, 3.0]})  # kg
    floor: Words = field(default_factory=lambda: {"slippery": [0.05, 0.12], "rough": [0.35, 0.5]})  # ground friction
    restitution: float = 0.3
    friction: float = 0.3  # between objects
    colours: list[str] = field(default_factory=lambda: list(palette.OBJECT_COLOURS))
    gravity: Words = field(default_factory=lambda: {"normal": [9.81, 9.81]})  # presses objects on the floor
    agent: bool = True
    actions: str = "mixed"
    ood: dict = field(default_factory=lambda: {"num_objects": [4, 5]})
    held_out_looks: list = field(default_factory=lambda: [["red", "large"], ["blue", "small"], ["yellow", "large"]])

    def __post_init__(self) -> None:
        check_range("scene.num_objects", self.num_objects, lo=1, integer=True)
        check_words("scene.size", self.size, lo=1e-3)
        check_words("scene.mass", self.mass, lo=1e-3)
        check_words("scene.floor", self.floor, lo=0.0)
        if not 0.0 <= self.box_probability <= 1.0:
            raise ConfigError(f"scene.box_probability must be in [0, 1], got {self.box_probability}")
        if not self.agent:
            raise ConfigError("scene.agent: the push scene needs its agent")
        for c in self.colours:
            if c not in palette.OBJECT_COLOURS:
                raise ConfigError(f"scene.colours: {c!r} is not an object colour; valid: {list(palette.OBJECT_COLOURS)}")
        super().__post_init__()

    def _validate_geometry(self, resolution: tuple[int, int]) -> None:
        h, w = resolution
        box_w, box_h = self.box_height * w / h, self.box_height
        r = max(x[1] for x in self.size.values()) * math.sqrt(2)
        n = int(max(self.num_objects[1], self.ood.get("num_objects", [0, 0])[1]))
        if (n * math.pi * (r + 0.02) ** 2 + math.pi * (self.agent_radius + 0.02) ** 2) > 0.4 * box_w * box_h:
            raise ConfigError(
                f"scene.num_objects / scene.size: {n} objects up to {r:.2f} m across and the agent cannot be placed "
                f"apart in a {box_w:.2f} x {box_h:.2f} m floor; use fewer or smaller objects"
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

        fname, mu = word(rng, self.floor)
        physics = dataclasses.replace(physics, ground_friction=mu)
        labels["floor"] = fname
        n = integer(rng, self.num_objects)
        looks, shapes = [], []
        for i in range(n):
            colour, sname, s = self.look(rng, self.colours, self.size, {c for c, _, _ in looks}, first=i == 0, split=split)
            looks.append((colour, sname, s))
            shapes.append("box" if rng.random() < self.box_probability else "sphere")
        radii = [s * (math.sqrt(2) if shape == "box" else 1.0) for (_, _, s), shape in zip(looks, shapes)]
        centres = place_discs(rng, [self.agent_radius, *radii], (camera.box_width, camera.box_height), margin=0.05)
        objects = []
        for i, ((colour, sname, s), shape) in enumerate(zip(looks, shapes)):
            mname, m = word(rng, self.mass)
            name = f"{'box' if shape == 'box' else 'ball'}{i}"
            objects.append(
                ObjectSpec(
                    name=name, shape=shape, size=(s, s), colour=colour, mass=m, restitution=self.restitution,
                    friction=self.friction, position=centres[i + 1],
                    angle=float(rng.uniform(0, math.pi / 2)) if shape == "box" else 0.0,
                )
            )
            labels.update({f"{name}.size": sname, f"{name}.mass": mname})
        agent = ObjectSpec(
            name="agent", shape="sphere", size=(self.agent_radius, self.agent_radius), colour=palette.AGENT_COLOUR[0],
            mass=self.agent_mass, restitution=self.restitution, friction=self.friction, position=centres[0], role="agent",
        )

        return SceneSpec(
            scene=self.name, num_frames=num_frames, camera=camera, physics=physics, objects=(*objects, agent),
            agent=AgentSpec(), labels=labels,
        )
