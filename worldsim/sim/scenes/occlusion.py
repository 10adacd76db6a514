"""``occlusion``: balls that pass behind opaque screens and come out again.

Screens stand on the floor nearer the camera than the plane of motion: they hide
balls but never touch them. Every ball starts in view, on one side of a screen,
heading for it fast enough to reach it in the first half of the episode; screens
are wide enough that a ball is wholly hidden for at least two frames. The true
positions are recorded while hidden (``visible_pixels`` is 0 there), and each
hide is an ``occlusion`` event with the frames it starts and ends.
"""

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
    uniform,
    word,
)
from worldsim.sim.spec import CameraSpec, FixtureSpec, ObjectSpec, PhysicsSpec, SceneSpec, SpecError


@dataclass
class OcclusionConfig(SceneConfig):
    """Ranges of the occlusion scene (see conf/scene/occlusion.yaml)."""

    name: ClassVar[str] = "occlusion"
    ood_keys: ClassVar[tuple[str, ...]] = ("num_balls", "speed")

    num_balls: Range = field(default_factory=lambda: [1, 3])
    num_screens: Range = field(default_factory=lambda: [1, 2])
    screen_width: Range = field(default_factory=lambda: [0.35, 0.5])  # m
    screen_height: Range = field(default_factory=lambda: [0.9, 1.0])  # fraction of the box height
    radius: Words = field(default_factory=lambda: {"small": [0.05, 0.065], "large": [0.08, 0.1]})  # m
    speed: Range = field(default_factory=lambda: [0.6, 1.6])  # m/s, mostly horizontal
    heading: float = 20.0  # degrees: most a ball's direction departs from the horizontal
    mass: Words = field(default_factory=lambda: {"light": [0.2, 0.5], "heavy": [2.0, 5.0]})  # kg
    restitution: Words = field(default_factory=lambda: {"bouncy": [0.55, 0.75], "very bouncy": [0.88, 0.98]})
    friction: float = 0.2
    colours: list[str] = field(default_factory=lambda: list(palette.OBJECT_COLOURS))
    gravity: Words = field(default_factory=lambda: {"zero": [0.0, 0.0], "low": [1.0, 2.5]})
    ood: dict = field(default_factory=lambda: {"num_balls": [4, 5], "speed": [2.0, 3.0]})
    held_out_looks: list = field(default_factory=lambda: [["red", "large"], ["blue", "small"], ["yellow", "large"]])

    @property
    def _gap(self) -> float:
        """Least room beside and between screens: a ball fits there wholly in view."""
        return 2 * max(x[1] for x in self.radius.values()) + 0.1

    def __post_init__(self) -> None:
        check_range("scene.num_balls", self.num_balls, lo=1, integer=True)
        check_range("scene.num_screens", self.num_screens, lo=1, integer=True)
        check_range("scene.screen_width", self.screen_width, lo=0.01)
        check_range("scene.screen_height", self.screen_height, lo=0.01, hi=1.0)
        check_range("scene.speed", self.speed, lo=0.01)
        check_words("scene.radius", self.radius, lo=1e-3)
        check_words("scene.mass", self.mass, lo=1e-3)
        check_words("scene.restitution", self.restitution, lo=0.0, hi=1.0)
        if not 0 <= self.heading < 90:
            raise ConfigError(f"scene.heading must be in [0, 90) degrees, got {self.heading}")
        for c in self.colours:
            if c not in palette.OBJECT_COLOURS:
                raise ConfigError(f"scene.colours: {c!r} is not an object colour; valid: {list(palette.OBJECT_COLOURS)}")
        super().__post_init__()
        r_max = max(x[1] for x in self.radius.values())
        if self.screen_width[0] <= 2 * r_max:
            raise ConfigError(
                f"scene.screen_width: screens from {self.screen_width[0]} m wide cannot hide a ball {2 * r_max} m across"
            )
        if int(self.num_screens[1]) > len(palette.OCCLUDER_COLOURS):
            raise ConfigError(f"scene.num_screens: at most {len(palette.OCCLUDER_COLOURS)} screens (one per occluder colour)")

    def _validate_geometry(self, resolution: tuple[int, int]) -> None:
        h, w = resolution
        box_w = self.box_height * w / h
        need = int(self.num_screens[1]) * self.screen_width[1] + (int(self.num_screens[1]) + 1) * self._gap
        if need > box_w:
            raise ConfigError(
                f"scene.num_screens / scene.screen_width: {int(self.num_screens[1])} screens up to {self.screen_width[1]} m wide "
                f"with room to pass between them need a {need:.2f} m wide box, this one is {box_w:.2f} m; the screens would "
                "cover the frame"
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
        box_w, box_h = camera.box_width, camera.box_height
        # Screens: standing on the floor, spread across the box with gaps between.
        k = integer(rng, self.num_screens)
        widths = [uniform(rng, self.screen_width) for _ in range(k)]
        slack = box_w - sum(widths) - self._gap * (k + 1)
        gaps = rng.dirichlet(np.ones(k + 1)) * slack + self._gap
        screens, left = [], 0.0
        greys = list(palette.OCCLUDER_COLOURS)
        for j in range(k):
            left += gaps[j]
            height = uniform(rng, self.screen_height) * box_h
            screens.append(
                FixtureSpec(
                    name=f"screen{j}", kind="occluder", position=(left + widths[j] / 2, height / 2), size=(widths[j] / 2, height / 2),
                    colour=greys[j],
                )
            )
            left += widths[j]
        # Balls: each starts in view beside a screen, heading for it.
        n = integer(rng, self.num_balls)
        duration = num_frames / physics.fps
        objects: list[ObjectSpec] = []
        placed: list[tuple[float, float, float]] = []
        for i in range(n):
            colour, sname, r = self.look(rng, self.colours, self.radius, {o.colour for o in objects}, first=i == 0, split=split)
            for _ in range(200):
                scr = screens[int(rng.integers(k))]
                speed = uniform(rng, self.speed)
                side = -1.0 if rng.random() < 0.5 else 1.0  # start left (-1) or right (+1) of the screen
                reach = min(speed * duration * 0.5, 1.2)  # reach the screen in the first half
                edge = scr.position[0] + side * (scr.size[0] + r + 0.02)
                u = edge + side * float(rng.uniform(0.0, reach))
                v = float(rng.uniform(r + 0.05, 2 * scr.size[1] - r - 0.05))
                if not (r + 0.01 < u < box_w - r - 0.01 and r < v < box_h - r):
                    continue
                if any(abs(u - s.position[0]) < s.size[0] + r for s in screens):
                    continue  # starts (partly) hidden
                if any(math.hypot(u - pu, v - pv) < r + pr + 0.02 for pu, pv, pr in placed):
                    continue
                angle = math.radians(float(rng.uniform(-self.heading, self.heading)))
                vel = (-side * speed * math.cos(angle), speed * math.sin(angle))
                break
            else:
                raise SpecError("could not place a ball in view beside a screen; use fewer balls or narrower screens")
            placed.append((u, v, r))
            mname, m = word(rng, self.mass)
            ename, e = word(rng, self.restitution)
            name = f"ball{i}"
            objects.append(
                ObjectSpec(
                    name=name, shape="sphere", size=(r, r), colour=colour, mass=m, restitution=e, friction=self.friction,
                    position=(u, v), velocity=vel,
                )
            )
            labels.update({f"{name}.size": sname, f"{name}.mass": mname, f"{name}.restitution": ename})
        return SceneSpec(
            scene=self.name, num_frames=num_frames, camera=camera, physics=physics, objects=tuple(objects),
            fixtures=tuple(screens), labels=labels,
        )
