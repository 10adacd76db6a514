"""Scene specifications: everything an engine needs to build and run one episode.

A spec is plain data (frozen dataclasses), fully determined by a scene sampler, a
seed and a config; both engines build the same world from it. Specs round-trip
through JSON (``to_dict`` / ``SceneSpec.from_dict``), which is how an episode file
and its manifest line record exactly what was simulated.

Coordinates. All motion happens in one plane, seen face-on by a fixed camera. Plane
coordinates ``(u, v)`` are in metres: ``u`` to the right, ``v`` up in the image, the
visible box spanning ``[0, box_width] x [0, box_height]``; its four edges are walls.
Angles are counter-clockwise as seen in the image. Pixel coordinates ``(x, y)`` put
``(0, 0)`` at the top-left corner of the frame, ``x`` to the right and ``y`` down;
pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``, so its centre is at
``(col + 0.5, row + 0.5)``.

Views. ``side``: gravity pulls along ``-v``. ``top``: the camera looks down on a
floor; gravity is perpendicular to the image and acts only through ground friction
(``PhysicsSpec.ground_friction``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from worldsim.sim import palette

SHAPES = ("sphere", "box", "pane")
ROLES = ("passive", "agent")
VIEWS = ("side", "top")
FIXTURE_KINDS = ("occluder",)
WALL_EDGES = ("left", "right", "bottom", "top")


class SpecError(ValueError):
    """A scene spec or scene config that cannot be simulated; the message says why."""


@dataclass(frozen=True)
class PaneSpec:
    """A pane pre-cut into a grid of rectangular fragments held by breakable welds.

    Every fragment is welded in place (as a pane held in a frame). When the impulse
    its welds must hold (the contact impulse other objects give the pane) within
    ``break_window`` seconds passes ``strength``, the pane shatters: every weld is
    released at once and the fragments fly and fall freely.
    """

    rows: int
    cols: int
    strength: float  # N*s: impulse the pane withstands within the break window
    # Cut positions as fractions in (0, 1), sorted: len(cuts_u) == cols - 1, etc.
    # Irregular cuts keep the fragments from looking like a tiled grid.
    cuts_u: tuple[float, ...] = ()
    cuts_v: tuple[float, ...] = ()
    break_window: float = 0.02  # s; force is integrated over this window (see above)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise SpecError(f"pane needs at least 1 row and column, got {self.rows}x{self.cols}")
        if self.strength <= 0:
            raise SpecError(f"pane strength must be positive, got {self.strength}")
        for name, cuts, n in (("cuts_u", self.cuts_u, self.cols), ("cuts_v", self.cuts_v, self.rows)):
            if cuts and len(cuts) != n - 1:
                raise SpecError(f"pane {name} needs {n - 1} cut positions, got {len(cuts)}")
            if any(not 0.0 < c < 1.0 for c in cuts) or list(cuts) != sorted(cuts):
                raise SpecError(f"pane {name} must be sorted fractions in (0, 1), got {cuts}")

    @property
    def num_fragments(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class ObjectSpec:
    """A moving body. ``size`` is (radius, radius) for spheres, half extents otherwise."""

    name: str
    shape: str
    size: tuple[float, float]
    colour: str
    mass: float  # kg
    restitution: float  # 0 (dead) .. 1 (perfectly elastic); pairs combine by product
    friction: float  # Coulomb coefficient; pairs combine by product
    position: tuple[float, float]  # (u, v) of the centre, metres
    velocity: tuple[float, float] = (0.0, 0.0)  # m/s
    angle: float = 0.0  # rad, counter-clockwise in the image
    angular_velocity: float = 0.0  # rad/s, counter-clockwise
    role: str = "passive"
    pane: PaneSpec | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise SpecError(f"object {self.name!r}: unknown shape {self.shape!r}; valid: {SHAPES}")
        if self.role not in ROLES:
            raise SpecError(f"object {self.name!r}: unknown role {self.role!r}; valid: {ROLES}")
        palette.rgb(self.colour)  # raises with the valid names
        if min(self.size) <= 0:
            raise SpecError(f"object {self.name!r}: size must be positive, got {self.size}")
        if self.shape == "sphere" and self.size[0] != self.size[1]:
            raise SpecError(f"object {self.name!r}: a sphere's size is (radius, radius), got {self.size}")
        if self.mass <= 0:
            raise SpecError(f"object {self.name!r}: mass must be positive, got {self.mass}")
        if not 0.0 <= self.restitution <= 1.0:
            raise SpecError(f"object {self.name!r}: restitution must be in [0, 1], got {self.restitution}")
        if self.friction < 0:
            raise SpecError(f"object {self.name!r}: friction must be >= 0, got {self.friction}")
        if (self.shape == "pane") != (self.pane is not None):
            raise SpecError(f"object {self.name!r}: shape 'pane' and a PaneSpec go together")

    @property
    def radius(self) -> float:
        """Radius of the bounding circle (the radius itself for a sphere)."""
        if self.shape == "sphere":
            return self.size[0]
        return (self.size[0] ** 2 + self.size[1] ** 2) ** 0.5


@dataclass(frozen=True)
class FixtureSpec:
    """A static, axis-aligned rectangle. Occluders stand nearer the camera than the
    plane of motion: they hide objects but never touch them."""

    name: str
    kind: str
    position: tuple[float, float]  # centre (u, v), metres
    size: tuple[float, float]  # half extents, metres
    colour: str

    def __post_init__(self) -> None:
        if self.kind not in FIXTURE_KINDS:
            raise SpecError(f"fixture {self.name!r}: unknown kind {self.kind!r}; valid: {FIXTURE_KINDS}")
        if min(self.size) <= 0:
            raise SpecError(f"fixture {self.name!r}: size must be positive, got {self.size}")
        palette.rgb(self.colour)


@dataclass(frozen=True)
class WallsSpec:
    """The frame's edges. Wall restitution and friction multiply the object's own,
    so the defaults (1, 1) leave an object's values as they are."""

    edges: tuple[str, ...] = WALL_EDGES
    restitution: float = 1.0
    friction: float = 1.0

    def __post_init__(self) -> None:
        bad = [e for e in self.edges if e not in WALL_EDGES]
        if bad:
            raise SpecError(f"unknown wall edges {bad}; valid: {WALL_EDGES}")


@dataclass(frozen=True)
class CameraSpec:
    """A fixed camera looking straight at the plane; the frame is the box."""

    view: str = "side"
    height: int = 64  # pixels
    width: int = 64  # pixels
    box_height: float = 2.0  # metres shown from the bottom to the top edge

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise SpecError(f"unknown camera view {self.view!r}; valid: {VIEWS}")
        if self.height < 8 or self.width < 8:
            raise SpecError(f"resolution must be at least 8x8, got {self.height}x{self.width}")
        if self.box_height <= 0:
            raise SpecError(f"box_height must be positive, got {self.box_height}")

    @property
    def box_width(self) -> float:
        return self.box_height * self.width / self.height

    @property
    def pixels_per_metre(self) -> float:
        return self.height / self.box_height


@dataclass(frozen=True)
class PhysicsSpec:
    gravity: float = 9.81  # m/s^2; side view: along -v; top view: into the floor
    fps: int = 20  # video frames per second
    substeps: int = 12  # physics steps per frame (20 fps x 12 = 240 Hz)
    ground_friction: float = 0.0  # top view: Coulomb coefficient against the floor

    def __post_init__(self) -> None:
        if self.gravity < 0:
            raise SpecError(f"gravity must be >= 0 (its direction is fixed by the view), got {self.gravity}")
        if self.fps <= 0 or self.substeps <= 0:
            raise SpecError(f"fps and substeps must be positive, got {self.fps} and {self.substeps}")
        if self.ground_friction < 0:
            raise SpecError(f"ground_friction must be >= 0, got {self.ground_friction}")

    @property
    def dt(self) -> float:
        """Physics time step, seconds."""
        return 1.0 / (self.fps * self.substeps)


@dataclass(frozen=True)
class AgentSpec:
    """How an action drives the agent: the action is a target velocity.

    An action ``a`` in ``[-1, 1]^2`` asks for velocity ``a * max_speed``; each
    physics step the agent gets the force ``gain * mass * (target - velocity)``,
    clipped to ``max_force`` in magnitude. So the agent accelerates towards the
    commanded velocity, and pushing a heavy object slows it down.
    """

    max_speed: float = 1.5  # m/s at |action| = 1 along an axis
    max_force: float = 20.0  # N
    gain: float = 20.0  # 1/s

    def __post_init__(self) -> None:
        if self.max_speed <= 0 or self.max_force <= 0 or self.gain <= 0:
            raise SpecError("agent max_speed, max_force and gain must be positive")


@dataclass(frozen=True)
class SceneSpec:
    scene: str
    num_frames: int
    camera: CameraSpec
    physics: PhysicsSpec
    objects: tuple[ObjectSpec, ...]
    fixtures: tuple[FixtureSpec, ...] = ()
    walls: WallsSpec = field(default_factory=WallsSpec)
    agent: AgentSpec | None = None
    # Parameters the sampler chose as words (e.g. {"gravity": "low"}): the
    # caption grammar's vocabulary for what the pixels do not show.
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise SpecError(f"num_frames must be at least 1, got {self.num_frames}")
        if not self.objects:
            raise SpecError("a scene needs at least one object")
        names = [o.name for o in self.objects] + [f.name for f in self.fixtures]
        if len(set(names)) != len(names):
            raise SpecError(f"object and fixture names must be unique, got {names}")
        colours = [o.colour for o in self.objects]
        if len(set(colours)) != len(colours):
            raise SpecError(f"every object needs its own colour, got {colours}")
        agents = [o for o in self.objects if o.role == "agent"]
        if len(agents) > 1:
            raise SpecError("at most one agent per scene")
        if agents and self.agent is None:
            raise SpecError("a scene with an agent object needs an AgentSpec")
        w, h = self.camera.box_width, self.camera.box_height
        for o in self.objects:
            ru, rv = self.half_extent(o)
            u, v = o.position
            if not (ru <= u <= w - ru and rv <= v <= h - rv):
                raise SpecError(
                    f"object {o.name!r} at {o.position} with extent ({ru:.3f}, {rv:.3f}) "
                    f"does not fit in the {w:.3f} x {h:.3f} m box"
                )

    # -- geometry ---------------------------------------------------------------
    @staticmethod
    def half_extent(o: ObjectSpec) -> tuple[float, float]:
        """Axis-aligned half extents of an object at its angle (metres)."""
        if o.shape == "sphere":
            return o.size
        import math

        c, s = abs(math.cos(o.angle)), abs(math.sin(o.angle))
        return (c * o.size[0] + s * o.size[1], s * o.size[0] + c * o.size[1])

    @property
    def agent_index(self) -> int | None:
        for i, o in enumerate(self.objects):
            if o.role == "agent":
                return i
        return None

    def to_pixels(self, u: float, v: float) -> tuple[float, float]:
        """Plane coordinates (m) to pixel coordinates of the rendered frame."""
        ppm = self.camera.pixels_per_metre
        return (u * ppm, (self.camera.box_height - v) * ppm)

    # -- serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SceneSpec":
        def obj(o: dict[str, Any]) -> ObjectSpec:
            o = dict(o)
            pane = o.pop("pane", None)
            return ObjectSpec(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in o.items()},
                pane=None if pane is None else PaneSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in pane.items()}),
            )

        def fixture(f: dict[str, Any]) -> FixtureSpec:
            return FixtureSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()})

        d = dict(d)
        return cls(
            scene=d["scene"],
            num_frames=d["num_frames"],
            camera=CameraSpec(**d["camera"]),
            physics=PhysicsSpec(**d["physics"]),
            objects=tuple(obj(o) for o in d["objects"]),
            fixtures=tuple(fixture(f) for f in d.get("fixtures", ())),
            walls=WallsSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.get("walls", {}).items()}),
            agent=None if d.get("agent") is None else AgentSpec(**d["agent"]),
            labels=dict(d.get("labels", {})),
        )
