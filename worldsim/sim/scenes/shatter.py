"""``shatter``: a ball thrown at a glass pane, seen from the side.

The pane stands on the floor, pre-cut into 6-24 rectangular fragments welded to
their neighbours, its bottom row welded to the floor. The ball is aimed (ballistic
under gravity) at a random height of the pane's face. The pane's strength is hidden:
``fragile`` panes break under all but the weakest hits, ``sturdy`` ones withstand
all but the strongest, so whether a pane breaks depends on the hit (visible speed,
hidden mass and bounciness) and on the word only the caption carries.
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
from worldsim.sim.spec import CameraSpec, ObjectSpec, PaneSpec, PhysicsSpec, SceneSpec, SpecError


@dataclass
class ShatterConfig(SceneConfig):
    """Ranges of the shatter scene (see conf/scene/shatter.yaml)."""

    name: ClassVar[str] = "shatter"
    ood_keys: ClassVar[tuple[str, ...]] = ("throw_speed", "fragments", "radius")

    fragments: Range = field(default_factory=lambda: [6, 24])  # pieces the pane is cut into
    pane_height: Range = field(default_factory=lambda: [0.9, 1.4])  # m
    pane_width: Range = field(default_factory=lambda: [0.12, 0.18])  # m, across the image
    pane_position: Range = field(default_factory=lambda: [0.6, 0.75])  # centre, fraction of the box width
    pane_mass: Range = field(default_factory=lambda: [1.0, 2.0])  # kg
    strength: Words = field(default_factory=lambda: {"fragile": [0.8, 1.3], "sturdy": [10.0, 16.0]})  # N*s
    fragile_probability: float = 0.5  # how often the pane is fragile (about the break rate)
    radius: Words = field(default_factory=lambda: {"small": [0.08, 0.1], "large": [0.12, 0.15]})  # m
    mass: Words = field(default_factory=lambda: {"light": [0.3, 0.6], "heavy": [1.5, 3.0]})  # kg
    restitution: Words = field(default_factory=lambda: {"dead": [0.1, 0.3], "bouncy": [0.55, 0.75]})
    throw_speed: Range = field(default_factory=lambda: [2.0, 6.0])  # m/s, horizontal
    throw_from: Range = field(default_factory=lambda: [0.12, 0.3])  # start, fraction of the box width
    friction: float = 0.4
    colours: list[str] = field(default_factory=lambda: list(palette.OBJECT_COLOURS))
    gravity: Words = field(default_factory=lambda: {"low": [4.0, 6.0], "normal": [9.81, 9.81]})
    ood: dict = field(default_factory=lambda: {"throw_speed": [6.5, 8.5]})
    held_out_looks: list = field(default_factory=lambda: [["red", "large"], ["blue", "small"], ["yellow", "large"]])

    def __post_init__(self) -> None:
        check_range("scene.fragments", self.fragments, lo=1, integer=True)
        check_range("scene.pane_height", self.pane_height, lo=0.05)
        check_range("scene.pane_width", self.pane_width, lo=0.02)
        check_range("scene.pane_position", self.pane_position, lo=0.0, hi=1.0)
        check_range("scene.pane_mass", self.pane_mass, lo=1e-3)
        check_range("scene.throw_speed", self.throw_speed, lo=0.1)
        check_range("scene.throw_from", self.throw_from, lo=0.0, hi=1.0)
        check_words("scene.strength", self.strength, lo=1e-6)
        check_words("scene.radius", self.radius, lo=1e-3)
        check_words("scene.mass", self.mass, lo=1e-3)
        check_words("scene.restitution", self.restitution, lo=0.0, hi=1.0)
        if set(self.strength) != {"fragile", "sturdy"}:
            raise ConfigError(f"scene.strength must have the words 'fragile' and 'sturdy', got {list(self.strength)}")
        if not 0.0 <= self.fragile_probability <= 1.0:
            raise ConfigError(f"scene.fragile_probability must be in [0, 1], got {self.fragile_probability}")
        for c in self.colours:
            if c not in palette.OBJECT_COLOURS:
                raise ConfigError(f"scene.colours: {c!r} is not an object colour; valid: {list(palette.OBJECT_COLOURS)}")
        super().__post_init__()
        # A pane's own weight must not break it: the weld at its foot carries its
        # weight, m g, for a whole break window.
        g = max(r[1] for r in self.gravity.values())
        load = self.pane_mass[1] * g * 0.02
        if self.strength["fragile"][0] <= load:
            raise ConfigError(
                f"scene.strength: a fragile pane of up to {self.pane_mass[1]} kg would break under its own weight "
                f"(its foot carries {load:.2f} N*s per break window); raise the fragile range above that"
            )

    def _validate_geometry(self, resolution: tuple[int, int]) -> None:
        h, w = resolution
        box_w, box_h = self.box_height * w / h, self.box_height
        if self.pane_height[1] >= box_h - 0.05:
            raise ConfigError(f"scene.pane_height: a pane of {self.pane_height[1]} m does not fit under the {box_h} m ceiling")
        right = self.pane_position[1] * box_w + self.pane_width[1] / 2
        left = self.pane_position[0] * box_w - self.pane_width[1] / 2
        if right >= box_w or left <= self.throw_from[1] * box_w + max(r[1] for r in self.radius.values()):
            raise ConfigError(
                f"scene.pane_position: the pane ({left:.2f}-{right:.2f} m) must stand inside the box and right of where "
                f"the ball starts (up to {self.throw_from[1] * box_w:.2f} m)"
            )
        # every fragment at least a pixel and a half on each side
        px = h / self.box_height
        cols = 1 if self.fragments[1] < 12 else 2
        rows = math.ceil(self.fragments[1] / cols)
        if self.pane_height[0] / rows * px < 1.5 or self.pane_width[0] / cols * px < 1.5:
            raise ConfigError(
                f"scene.fragments: {int(self.fragments[1])} pieces of a {self.pane_width[0]} x {self.pane_height[0]} m pane "
                f"are smaller than 1.5 px at {h}x{w}; the pane cannot hold that many fragments"
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
        box_w = camera.box_width
        g = physics.gravity
        # The pane: rows x cols fragments with jittered cuts.
        n = integer(rng, self.fragments)
        cols = 1 if n < 12 else 2
        rows = max(1, round(n / cols))
        ph, pw = uniform(rng, self.pane_height), uniform(rng, self.pane_width)
        pu = uniform(rng, self.pane_position) * box_w
        cuts_v = _jittered_cuts(rng, rows)
        cuts_u = _jittered_cuts(rng, cols)
        sname = "fragile" if rng.random() < self.fragile_probability else "sturdy"
        strength = uniform(rng, self.strength[sname])
        pane = ObjectSpec(
            name="pane",
            shape="pane",
            size=(pw / 2, ph / 2),
            colour=palette.PANE_COLOUR[0],
            mass=uniform(rng, self.pane_mass),
            restitution=0.3,
            friction=self.friction,
            position=(pu, ph / 2 + 0.002),  # standing just clear of the floor, welded to it
            pane=PaneSpec(rows=rows, cols=cols, strength=strength, cuts_u=cuts_u, cuts_v=cuts_v),
        )
        # The ball, aimed ballistically at a point on the pane's left face.
        colour, rname, r = self.look(rng, self.colours, self.radius, set(), first=True, split=split)
        mname, m = word(rng, self.mass)
        ename, e = word(rng, self.restitution)
        for _ in range(100):
            u0 = uniform(rng, self.throw_from) * box_w
            v0 = float(rng.uniform(0.3, 1.6))
            target_v = float(rng.uniform(0.15, 0.9)) * ph
            vx = uniform(rng, self.throw_speed)
            t = (pu - pw / 2 - r - u0) / vx  # time to reach the face
            vz = (target_v - v0 + 0.5 * g * t * t) / t
            # stay inside the box on the way: below the ceiling at the apex, above the floor
            apex = v0 + (vz * vz / (2 * g) if g > 0 and vz > 0 and vz / g < t else max(0.0, vz * t - 0.5 * g * t * t))
            if r < v0 < camera.box_height - r and apex < camera.box_height - r and t > 0.05 and min(v0, target_v) > r:
                break
        else:
            raise SpecError("could not aim the ball at the pane from inside the box; widen scene.throw_from or the pane range")
        ball = ObjectSpec(
            name="ball",
            shape="sphere",
            size=(r, r),
            colour=colour,
            mass=m,
            restitution=e,
            friction=self.friction,
            position=(u0, v0),
            velocity=(vx, vz),
        )
        labels.update({"pane.strength": sname, "ball.size": rname, "ball.mass": mname, "ball.restitution": ename})
        return SceneSpec(
            scene=self.name, num_frames=num_frames, camera=camera, physics=physics, objects=(ball, pane), labels=labels
        )


def _jittered_cuts(rng: np.random.Generator, n: int) -> tuple[float, ...]:
    """n - 1 sorted cut fractions, each within a third of a piece of the even cut."""
    if n <= 1:
        return ()
    even = np.arange(1, n) / n
    return tuple(float(x) for x in even + rng.uniform(-1, 1, n - 1) / (3 * n))
