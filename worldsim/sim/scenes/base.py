"""What every scene config shares: physics and camera settings, ranges, splits.

A scene config is a dataclass of parameter *ranges*; ``sample(rng, ...)`` draws one
:class:`SceneSpec` from them. Ranges are ``[lo, hi]`` lists (uniform; integers
inclusive). Hidden parameters are drawn as *words* first (``{"low": [2, 4],
"normal": [9.81, 9.81]}``: pick a word uniformly, then a value in its range), so the
caption can name them exactly; the gaps between the words' ranges keep them apart.

Splits. ``train`` and ``test`` use the same ranges (their seeds differ, see
:func:`episode_seed`); ``ood`` replaces the fields listed in the config's ``ood``
mapping with held-out ranges, which must not overlap the training ones.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from worldsim.sim import palette
from worldsim.sim.actions import ScriptedPusher, ou_actions
from worldsim.sim.spec import AgentSpec, CameraSpec, ObjectSpec, PhysicsSpec, SceneSpec, SpecError

SPLITS = ("train", "test", "ood")

Range = list[float]
Words = dict[str, list[float]]


class ConfigError(ValueError):
    """A scene or generation config that cannot work; the message names the key."""


def episode_seed(seed: int, scene: str, split: str, index: int) -> int:
    """The seed of episode ``index``: a function of (seed, scene, split, index) only.

    Independent of the engine (so both engines simulate the same specs) and of the
    number of workers; train and test draw from disjoint seed streams.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(scene.encode()), SPLITS.index(split), int(index)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


MAX_SIDE = 4096


def parse_resolution(value: Any) -> tuple[int, int]:
    """``64`` -> (64, 64); ``"48x64"`` -> (48, 64) as (height, width)."""
    bad = ConfigError(f"resolution must be an integer or HxW such as 48x64, got {value!r}")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    elif isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise bad
        h, w = int(parts[0]), int(parts[-1])
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        h, w = int(value[0]), int(value[1])
    else:
        raise bad
    if h < 8 or w < 8:
        raise ConfigError(f"resolution must be at least 8x8, got {h}x{w}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ConfigError(f"resolution {h}x{w} is beyond {MAX_SIDE} pixels a side; worldsim's scenes are meant for small frames (64 by default)")
    return h, w


def uniform(rng: np.random.Generator, r: Range) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def integer(rng: np.random.Generator, r: Range) -> int:
    return int(rng.integers(int(r[0]), int(r[1]) + 1))


def word(rng: np.random.Generator, words: Words) -> tuple[str, float]:
    """Pick a word uniformly, then a value in its range."""
    names = list(words)
    name = names[int(rng.integers(len(names)))]
    return name, uniform(rng, words[name])


def finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(float(x))


def check_range(key: str, r: Any, *, lo: float | None = None, hi: float | None = None, integer: bool = False) -> None:
    if not (isinstance(r, (list, tuple)) and len(r) == 2):
        raise ConfigError(f"{key} must be a [lo, hi] range, got {r!r}")
    if not all(finite_number(x) for x in r):
        raise ConfigError(f"{key} must be a range of two finite numbers, got {r!r}")
    a, b = r
    if integer and (int(a) != a or int(b) != b):
        raise ConfigError(f"{key} must be a range of whole numbers, got {r!r}")
    if a > b:
        raise ConfigError(f"{key}: lo must not exceed hi, got {r!r}")
    if lo is not None and a < lo:
        raise ConfigError(f"{key} must be >= {lo}, got {r!r}")
    if hi is not None and b > hi:
        raise ConfigError(f"{key} must be <= {hi}, got {r!r}")


def check_words(key: str, w: Any, *, lo: float | None = None, hi: float | None = None) -> None:
    if not isinstance(w, dict) or not w:
        raise ConfigError(f"{key} must map words to [lo, hi] ranges, got {w!r}")
    for name, r in w.items():
        check_range(f"{key}.{name}", r, lo=lo, hi=hi)
    spans = sorted((r[0], r[1], n) for n, r in w.items())
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise ConfigError(f"{key}: the ranges of {an!r} and {bn!r} overlap, so the words would not tell them apart")


def ranges_overlap(a: Any, b: Any) -> bool:
    """Whether two ranges (or word maps, by their values) share any value."""
    def spans(x: Any) -> list[tuple[float, float]]:
        if isinstance(x, dict):
            return [(float(r[0]), float(r[1])) for r in x.values()]
        return [(float(x[0]), float(x[1]))]

    return any(a0 <= b1 and b0 <= a1 for a0, a1 in spans(a) for b0, b1 in spans(b))


@dataclass
class SceneConfig:
    """Settings every scene has. Subclasses add their ranges and ``_sample``."""

    name: ClassVar[str]
    view: ClassVar[str] = "side"

    fps: int = 20  # video frames per second
    substeps: int = 12  # physics steps per frame
    box_height: float = 2.0  # metres from the bottom edge of the frame to the top
    gravity: Words = field(default_factory=lambda: {"normal": [9.81, 9.81]})  # m/s^2, by word
    ood: dict[str, Any] = field(default_factory=dict)  # held-out ranges for split=ood
    # (colour, size word) pairs never drawn for train or test; ood draws one of them
    # for its first object: unseen combinations of familiar colours and sizes.
    held_out_looks: list[list[str]] = field(default_factory=list)
    # An agent: a white disc driven by actions (see worldsim.sim.actions).
    agent: bool = False
    agent_radius: float = 0.1  # m
    agent_mass: float = 1.0  # kg
    actions: str = "random"  # random (Ornstein-Uhlenbeck) | scripted (push an object to a goal) | mixed
    scripted_fraction: float = 0.5  # with actions=mixed: how often the scripted policy drives
    # Fields that may be overridden for split=ood (subclasses extend).
    ood_keys: ClassVar[tuple[str, ...]] = ()
    ACTION_SOURCES: ClassVar[tuple[str, ...]] = ("random", "scripted", "mixed")

    def __post_init__(self) -> None:
        self._check_finite()
        if self.fps <= 0 or self.substeps <= 0:
            raise ConfigError(f"scene.fps and scene.substeps must be positive, got {self.fps} and {self.substeps}")
        if self.box_height <= 0:
            raise ConfigError(f"scene.box_height must be positive, got {self.box_height}")
        check_words("scene.gravity", self.gravity, lo=0.0)
        if self.actions not in self.ACTION_SOURCES:
            raise ConfigError(f"scene.actions must be one of {self.ACTION_SOURCES}, got {self.actions!r}")
        if not 0.0 <= self.scripted_fraction <= 1.0:
            raise ConfigError(f"scene.scripted_fraction must be in [0, 1], got {self.scripted_fraction}")
        if self.agent_radius <= 0 or self.agent_mass <= 0:
            raise ConfigError("scene.agent_radius and scene.agent_mass must be positive")
        sizes = getattr(self, "radius", None) if isinstance(getattr(self, "radius", None), dict) else getattr(self, "size", None)
        colours = getattr(self, "colours", [])
        for pair in self.held_out_looks:
            if len(pair) != 2 or pair[0] not in colours or not isinstance(sizes, dict) or pair[1] not in sizes:
                raise ConfigError(
                    f"scene.held_out_looks: {pair} must be [colour, size word] with a colour of scene.colours and a "
                    f"size word of the scene ({list(sizes) if isinstance(sizes, dict) else 'none'})"
                )
        bad = [k for k in self.ood if k not in self.ood_keys]
        if bad:
            raise ConfigError(f"scene.ood: {bad} cannot be held out; valid keys: {list(self.ood_keys)}")
        for k, v in self.ood.items():
            if ranges_overlap(getattr(self, k), v):
                raise ConfigError(f"scene.ood.{k} = {v} overlaps the training range {getattr(self, k)}; held-out ranges must be disjoint")

    def _check_finite(self) -> None:
        """Every number of the config finite (NaN and inf refused first, by key), before
        any range is compared with another."""
        def walk(key: str, v: Any) -> None:
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(f"{key}.{k}", x)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    walk(key, x)
            elif isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
                raise ConfigError(f"scene.{key} holds {v}; every range must be finite numbers")

        for f in dataclasses.fields(self):
            walk(f.name, getattr(self, f.name))

    # -- public ------------------------------------------------------------------------
    def for_split(self, split: str) -> "SceneConfig":
        """The config whose ranges a split draws from."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if split != "ood" or not self.ood:
            return self
        return dataclasses.replace(self, **self.ood, ood={})

    def validate(self, *, resolution: tuple[int, int], num_frames: int) -> None:
        """Refuse impossible settings before any work starts (raises ConfigError)."""
        if num_frames < 1:
            raise ConfigError(f"frames must be at least 1, got {num_frames}")
        for split in ("train", "ood") if self.ood else ("train",):
            self.for_split(split)._validate_geometry(resolution)

    def sample(self, rng: np.random.Generator, *, num_frames: int, resolution: tuple[int, int], split: str = "train") -> SceneSpec:
        """Draw one scene spec for ``split`` from these ranges."""
        cfg = self.for_split(split)
        h, w = resolution
        camera = CameraSpec(view=self.view, height=h, width=w, box_height=cfg.box_height)
        gname, g = word(rng, cfg.gravity)
        physics = PhysicsSpec(gravity=g, fps=cfg.fps, substeps=cfg.substeps)
        labels = {"gravity": gname} if self.view == "side" else {}
        try:
            spec = cfg._sample(rng, camera=camera, physics=physics, num_frames=num_frames, labels=labels, split=split)
            if cfg.agent and spec.agent_index is None:
                spec = cfg._add_agent(rng, spec)
        except SpecError as e:
            raise ConfigError(f"scene {self.name!r} drew an impossible spec: {e}") from e
        return spec

    def action_source(self, spec: SceneSpec, rng: np.random.Generator) -> Any:
        """The actions of an episode: an array, a closed-loop policy, or None (no agent).

        Draws from ``rng`` after the spec, so the actions are part of the episode's seed.
        """
        if spec.agent_index is None:
            return None
        scripted = self.actions == "scripted" or (self.actions == "mixed" and rng.random() < self.scripted_fraction)
        passive = [i for i, o in enumerate(spec.objects) if o.role == "passive" and o.shape != "pane"]
        if scripted and passive:
            target = passive[int(rng.integers(len(passive)))]
            name, goal = goal_region(rng, spec)
            spec.labels.update({"agent.policy": "scripted", "agent.target": spec.objects[target].name, "agent.goal": name})
            return ScriptedPusher(spec, target, goal)
        spec.labels["agent.policy"] = "random"
        return ou_actions(rng, spec.num_frames, fps=spec.physics.fps)

    def look(
        self, rng: np.random.Generator, colours: list[str], sizes: Words, taken: set[str], *, first: bool, split: str
    ) -> tuple[str, str, float]:
        """(colour, size word, size) for a new object, honouring held-out looks: never a
        held-out pair for train/test; for ood, a held-out pair for the first object."""
        held = {tuple(p) for p in self.held_out_looks}
        free = [c for c in colours if c not in taken]
        if not free:
            raise SpecError("more objects than colours: every object needs its own colour")
        if first and held and split == "ood":
            options = [p for p in sorted(held) if p[0] in free]
            if options:
                c, w = options[int(rng.integers(len(options)))]
                return c, w, uniform(rng, sizes[w])
        for _ in range(100):
            c = free[int(rng.integers(len(free)))]
            w, size = word(rng, sizes)
            if (c, w) not in held:
                return c, w, size
        raise SpecError("every free colour-size pair is held out; shorten scene.held_out_looks")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    # -- for subclasses -------------------------------------------------------------------
    def _add_agent(self, rng: np.random.Generator, spec: SceneSpec) -> SceneSpec:
        """The spec with a white agent disc placed clear of every object."""
        r = self.agent_radius
        avoid = [(o.position[0], o.position[1], o.radius) for o in spec.objects]
        (u, v), = place_discs(rng, [r], (spec.camera.box_width, spec.camera.box_height), avoid=avoid)
        agent = ObjectSpec(
            name="agent", shape="sphere", size=(r, r), colour=palette.AGENT_COLOUR[0], mass=self.agent_mass,
            restitution=0.2, friction=0.3, position=(u, v), role="agent",
        )
        return dataclasses.replace(spec, objects=(*spec.objects, agent), agent=AgentSpec())

    def _validate_geometry(self, resolution: tuple[int, int]) -> None:
        """Raise ConfigError if objects cannot fit in the box at this resolution."""

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
        raise NotImplementedError


def place_discs(
    rng: np.random.Generator,
    radii: list[float],
    box: tuple[float, float],
    *,
    region: tuple[float, float, float, float] | None = None,
    avoid: list[tuple[float, float, float]] = (),  # type: ignore[assignment]
    margin: float = 0.02,
    tries: int = 2000,
) -> list[tuple[float, float]]:
    """Non-overlapping centres for discs of the given radii inside ``region``
    (u0, v0, u1, v1; default the whole box), clear of the ``avoid`` discs (u, v, r)."""
    u0, v0, u1, v1 = region if region is not None else (0.0, 0.0, box[0], box[1])
    placed: list[tuple[float, float, float]] = list(avoid)
    out = []
    for r in radii:
        lo_u, hi_u, lo_v, hi_v = u0 + r + margin, u1 - r - margin, v0 + r + margin, v1 - r - margin
        if lo_u > hi_u or lo_v > hi_v:
            raise SpecError(f"a disc of radius {r:.3f} m does not fit in the region {region or box}")
        for _ in range(tries):
            u, v = float(rng.uniform(lo_u, hi_u)), float(rng.uniform(lo_v, hi_v))
            if all(math.hypot(u - pu, v - pv) >= r + pr + margin for pu, pv, pr in placed):
                placed.append((u, v, r))
                out.append((u, v))
                break
        else:
            raise SpecError(f"could not place {len(radii)} discs without overlap in {tries} tries; use fewer or smaller objects")
    return out


GOAL_REGIONS = ("bottom left", "bottom", "bottom right", "left", "centre", "right", "top left", "top", "top right")


def goal_region(rng: np.random.Generator, spec: SceneSpec) -> tuple[str, tuple[float, float]]:
    """A named region of the box (3 x 3 grid) and a point in its middle part."""
    k = int(rng.integers(len(GOAL_REGIONS)))
    row, col = divmod(k, 3)
    w, h = spec.camera.box_width, spec.camera.box_height
    u = (col + rng.uniform(0.3, 0.7)) * w / 3
    v = (row + rng.uniform(0.3, 0.7)) * h / 3
    return GOAL_REGIONS[k], (float(u), float(v))


def random_direction(rng: np.random.Generator) -> tuple[float, float]:
    a = float(rng.uniform(0.0, 2.0 * math.pi))
    return math.cos(a), math.sin(a)
