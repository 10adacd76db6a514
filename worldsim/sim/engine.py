"""The engine protocol and everything both engines share.

An engine builds a :class:`~worldsim.sim.spec.SceneSpec`, advances it one video frame
at a time, renders RGB and instance ids, and reports per-object state and events.
``PyBulletEngine`` and ``MuJoCoEngine`` implement the few engine-specific primitives
(build, one physics step, read bodies, read contacts, release welds, render); the
frame loop, the agent controller, ground friction, shattering and event detection
live here, once, so both engines obey the same rules.

Time. Frame 0 is the initial state. ``step(action)`` advances from frame t-1 to
frame t over ``physics.substeps`` physics steps; the action is held for the whole
frame. Events that happen during that step carry ``frame = t``: the first frame that
shows them.

Ids. Instance id 0 is the background; object ``i`` (in ``spec.objects`` order) is
``i + 1``; fixture ``j`` is ``len(objects) + 1 + j``. A pane's fragments all carry
the pane's id, so the pane is one object whose mask splits when it shatters.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from worldsim.sim.spec import WALL_EDGES, ObjectSpec, SceneSpec, SpecError

# Depth layout (metres along the camera's axis, negative = nearer the camera).
CAMERA_DISTANCE = 50.0  # far enough that the perspective camera is nearly orthographic
BODY_HALF_DEPTH = 0.1  # boxes are this thick either side of the plane
OCCLUDER_DEPTH = -0.5  # occluders stand here, clear of every moving body
WALL_THICKNESS = 1.0
FRAGMENT_GAP = 0.002  # metres between neighbouring pane fragments (welded, not touching)
BURST_SPEED = (0.5, 3.0)  # m/s: range of the speed shattered fragments fly apart at (see Engine._burst)
BURST_SPIN = 3.0  # rad/s

# A contact is reported as an event when its impact impulse exceeds that of this
# normal speed change: it filters out resting and rolling contacts and the micro-
# bounces of a dead ball (0.3 m/s is 0.5 px per frame at 64x64 and 20 fps).
EVENT_MIN_SPEED = 0.3  # m/s


@dataclass
class Body:
    """One rigid body in the engine: an object, or one fragment of a pane."""

    obj: int  # index into spec.objects
    shape: str  # "sphere" | "box"
    size: tuple[float, float]  # radius pair or half extents (m)
    position: tuple[float, float]
    angle: float
    velocity: tuple[float, float]
    angular_velocity: float
    mass: float
    # Drawn this much larger than it collides (m): pane fragments sit a gap apart
    # but must look like one pane.
    visual_pad: float = 0.0


@dataclass
class Weld:
    """A breakable weld between two bodies (b is None for the world)."""
    a: int
    b: int | None


def wall_key(edge_index: int) -> int:
    """Contact keys: objects are 0..N-1, walls are negative."""
    return -1 - edge_index


def pane_fragments(o: ObjectSpec) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """(centre, half extents) of each fragment of a pane, row-major from the bottom left.

    Cuts follow ``PaneSpec.cuts_u/cuts_v`` (uniform when empty); neighbours are
    separated by ``FRAGMENT_GAP`` so welded fragments never touch.
    """
    assert o.pane is not None
    pane = o.pane
    (cu, cv), (hw, hh) = o.position, o.size
    us = [0.0, *(pane.cuts_u or [i / pane.cols for i in range(1, pane.cols)]), 1.0]
    vs = [0.0, *(pane.cuts_v or [i / pane.rows for i in range(1, pane.rows)]), 1.0]
    out = []
    for r in range(pane.rows):
        for c in range(pane.cols):
            u0, u1 = cu - hw + 2 * hw * us[c], cu - hw + 2 * hw * us[c + 1]
            v0, v1 = cv - hh + 2 * hh * vs[r], cv - hh + 2 * hh * vs[r + 1]
            half = ((u1 - u0 - FRAGMENT_GAP) / 2, (v1 - v0 - FRAGMENT_GAP) / 2)
            if min(half) <= 0:
                raise SpecError(f"pane {o.name!r}: a fragment is thinner than the gap between fragments")
            out.append((((u0 + u1) / 2, (v0 + v1) / 2), half))
    return out


def pane_welds(o: ObjectSpec, first_body: int) -> list[Weld]:
    """Welds of a pane: every fragment to the world, as a pane held in a frame.

    (Welding fragments to their neighbours instead makes a chain that both engines'
    iterative solvers let flex by many pixels under a hit.)
    """
    assert o.pane is not None
    return [Weld(first_body + k, None) for k in range(o.pane.num_fragments)]


def expand_bodies(spec: SceneSpec) -> tuple[list[Body], list[Weld]]:
    """The rigid bodies and welds an engine must build for a spec."""
    bodies: list[Body] = []
    welds: list[Weld] = []
    for i, o in enumerate(spec.objects):
        if o.shape == "pane":
            frags = pane_fragments(o)
            area = sum(h[0] * h[1] for _, h in frags)
            welds += pane_welds(o, len(bodies))
            for centre, half in frags:
                bodies.append(Body(i, "box", half, centre, 0.0, o.velocity, 0.0, o.mass * half[0] * half[1] / area, FRAGMENT_GAP / 2))
        else:
            bodies.append(Body(i, o.shape, o.size, o.position, o.angle, o.velocity, o.angular_velocity, o.mass))
    return bodies, welds


def combined_restitution(a: float, b: float) -> float:
    return a * b


def combined_friction(a: float, b: float) -> float:
    return a * b


class ContactTracker:
    """Turns per-physics-step contact forces into impact events.

    A contact between two objects (or an object and a wall) starts when they first
    touch; its impulse is the normal force integrated over the first video frame of
    contact, which covers an impact in both engines (rigid in PyBullet, a few steps
    of soft contact in MuJoCo). A contact that breaks off for less than a frame and
    resumes is the same contact. Impacts weaker than ``EVENT_MIN_SPEED`` times the
    pair's effective mass are not events (resting and rolling contacts).
    """
    def __init__(self, spec: SceneSpec, masses: np.ndarray):
        self.spec = spec
        self.masses = masses
        self.window = spec.physics.substeps
        self.dt = spec.physics.dt
        # key -> [event frame, impulse, steps integrated, steps missing, first step]
        self.active: dict[tuple[int, int], list[float]] = {}
        self.events: list[dict[str, Any]] = []
        self.steps = 0
        # Objects that became debris (shattered panes), with the step they did: their
        # later contacts are not events; the break event tells what happened.
        self.debris: dict[int, int] = {}

    def update(self, forces: dict[tuple[int, int], float], frame: int) -> None:
        """Record the contact forces after one physics step."""
        self.steps += 1
        active = self.active
        if not forces and not active:
            return
        for key, f in forces.items():
            st = active.get(key)
            if st is None:
                st = active[key] = [frame, 0.0, 0, 0, self.steps]
            st[3] = 0
            if st[2] < self.window:
                st[1] += f * self.dt
                st[2] += 1
                if st[2] == self.window:
                    self._emit(key, st)
        if len(forces) != len(active):
            for key in [k for k in active if k not in forces]:
                st = active[key]
                st[3] += 1
                if st[3] >= self.window:
                    if st[2] < self.window:
                        self._emit(key, st)
                    del active[key]

    def flush(self) -> None:
        for key, st in self.active.items():
            if st[2] < self.window:
                self._emit(key, st)
                st[2] = self.window

    def _emit(self, key: tuple[int, int], st: list[float]) -> None:
        a, b = key
        if any(o in self.debris and st[4] > self.debris[o] for o in key):
            return
        if b < 0:
            m_eff = self.masses[a]
        else:
            m_eff = self.masses[a] * self.masses[b] / (self.masses[a] + self.masses[b])
        impulse = float(st[1])
        if impulse < EVENT_MIN_SPEED * m_eff:
            return
        names = [o.name for o in self.spec.objects]
        if b < 0:

            self.events.append(
                {"type": "wall", "frame": int(st[0]), "object": names[a], "wall": WALL_EDGES[-1 - b], "impulse": round(impulse, 5)}
            )
        else:
            self.events.append(
                {"type": "collision", "frame": int(st[0]), "objects": [names[a], names[b]], "impulse": round(impulse, 5)}
            )


class Engine(abc.ABC):
    """A physics engine that simulates and renders a scene spec, frame by frame.

    Usage::

        engine = make_engine("pybullet")
        engine.reset(spec)
        rgb, ids = engine.render()          # frame 0
        for t in range(1, spec.num_frames):
            engine.step(action)             # (2,) in [-1, 1]; ignored without an agent
            rgb, ids = engine.render()      # (H, W, 3) uint8, (H, W) uint8
            state = engine.state()          # positions (N, 2) px, velocities (N, 2) px/s
        events = engine.events()
    """
    name: ClassVar[str]
    # Sub-pixel offset (x, y) between this engine's rasteriser and the pixel
    # convention in spec.py; the camera is shifted by it so both engines agree.
    pixel_offset: ClassVar[tuple[float, float]] = (0.0, 0.0)

    def __init__(self) -> None:
        self.spec: SceneSpec | None = None

    # -- engine-specific primitives ---------------------------------------------
    @abc.abstractmethod
    def _build(self, spec: SceneSpec, bodies: list[Body], welds: list[Weld]) -> None:
        """Create the world for ``spec``: walls, bodies (in order), welds, camera."""

    @abc.abstractmethod
    def _physics_step(self) -> None:
        """Advance physics by ``spec.physics.dt``."""


    @abc.abstractmethod
    def _body_velocities(self, bodies: np.ndarray) -> np.ndarray:
        """(K, 2) in-plane velocities (m/s) of the given body indices."""

    @abc.abstractmethod
    def _apply_forces(self, bodies: np.ndarray, forces: np.ndarray) -> None:
        """Apply (K, 2) in-plane forces (N) at the centres of mass for the next physics step."""

    @abc.abstractmethod
    def _body_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (B, 2) m, velocities (B, 2) m/s and angles (B,) rad of all bodies."""

    @abc.abstractmethod
    def _contact_forces(self) -> dict[tuple[int, int], float]:
        """Normal force (N) summed per touching pair, keyed (object, object or wall_key)."""

    @abc.abstractmethod
    def _release_welds(self, welds: list[int]) -> None:
        """Remove the given welds and let the fragments they held collide."""

    @abc.abstractmethod
    def _add_velocities(self, bodies: np.ndarray, dv: np.ndarray, dw: np.ndarray) -> None:
        """Add (K, 2) in-plane velocities (m/s) and (K,) spins (rad/s, counter-clockwise)."""

    @abc.abstractmethod
    def _move_bodies(self, bodies: np.ndarray, offsets: np.ndarray) -> None:
        """Move the given bodies by (K, 2) in-plane offsets (m), keeping their velocities."""

    def place_objects(self, positions: np.ndarray) -> None:
        """Put every object's centre at ``positions`` (N, 2) in pixels (NaN: leave it),
        without simulating: for rendering states that physics did not produce (the
        constant-velocity baseline, edits)."""
        spec = self._require_spec()
        ppm = spec.camera.pixels_per_metre
        now = self.state()["positions"]
        delta = (np.asarray(positions, np.float64) - now) / ppm  # (N, 2) pixels -> metres
        delta[:, 1] *= -1  # y down -> v up
        delta = np.nan_to_num(delta)
        self._move_bodies(np.arange(len(self._bodies)), delta[self._body_obj])
        self._states = None

    @abc.abstractmethod
    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and instance ids (H, W) uint8 of the current state."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release the engine's resources."""

    # -- the shared frame loop ----------------------------------------------------
    def reset(self, spec: SceneSpec) -> None:
        """Build ``spec`` and set it to its initial state (frame 0)."""
        self.spec = spec
        bodies, welds = expand_bodies(spec)
        self._bodies = bodies
        self._welds = welds
        self._body_obj = np.array([b.obj for b in bodies])
        self._body_mass = np.array([b.mass for b in bodies])
        self._obj_mass = np.array([o.mass for o in spec.objects])
        self._first_body = np.searchsorted(self._body_obj, np.arange(len(spec.objects)))
        self._frame = 0
        self._agent = spec.agent_index
        self._agent_bodies = np.array([] if self._agent is None else np.nonzero(self._body_obj == self._agent)[0])
        self._friction_bodies = (
            np.arange(len(bodies)) if spec.camera.view == "top" and spec.physics.ground_friction > 0 else np.array([], int)
        )
        self._tracker = ContactTracker(spec, self._obj_mass)
        self._break_events: list[dict[str, Any]] = []
        # Pane shattering: per pane, a ring buffer of the impact load over the break window.
        self._panes = sorted({bodies[w.a].obj for w in welds})
        self._intact = {p: True for p in self._panes}
        self._any_intact = bool(self._panes)
        self._load_hot = 0  # physics steps left in which loads are tracked
        self._peak_load = {p: 0.0 for p in self._panes}
        if welds:
            window = max(spec.objects[p].pane.break_window for p in self._panes)  # type: ignore[union-attr]
            self._load_window = max(1, round(window / spec.physics.dt))
            self._loads = np.zeros((self._load_window, len(self._panes)))
        self._slot = -1
        self._action = np.zeros(2)
        self._states: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._build(spec, bodies, welds)

    def step(self, action: np.ndarray | None = None) -> None:
        """Advance one video frame. ``action`` (2,) in [-1, 1] drives the agent, if any."""
        spec = self._require_spec()
        if action is not None:
            action = np.asarray(action, dtype=np.float64).reshape(-1)
            if action.shape != (2,) or not np.all(np.isfinite(action)):
                raise ValueError(f"action must be 2 finite numbers, got {action!r}")
            self._action = np.clip(action, -1.0, 1.0)
        self._frame += 1
        self._states = None
        dt = spec.physics.dt
        for _ in range(spec.physics.substeps):
            self._apply_controls()
            self._physics_step()
            forces = self._contact_forces()
            self._tracker.update(forces, self._frame)
            if self._any_intact:
                self._check_panes(forces, dt)

    def state(self) -> dict[str, np.ndarray]:
        """Per-object state now: ``positions`` (N, 2) and ``velocities`` (N, 2) in
        pixels and pixels per second of the rendered frame (y down), ``angles`` (N,)
        in radians counter-clockwise. A pane reports its fragments' centre of mass."""
        spec = self._require_spec()
        pos, vel, ang = self._current_body_states()
        n = len(spec.objects)
        if len(pos) == n:
            opos, ovel, oang = pos, vel, ang
        else:  # mass-weighted mean over each object's bodies (pane fragments)
            w = self._body_mass[:, None]
            tot = np.bincount(self._body_obj, weights=self._body_mass, minlength=n)[:, None]
            opos = np.stack([np.bincount(self._body_obj, weights=(pos * w)[:, k], minlength=n) for k in range(2)], 1) / tot
            ovel = np.stack([np.bincount(self._body_obj, weights=(vel * w)[:, k], minlength=n) for k in range(2)], 1) / tot
            oang = ang[self._first_body]
        ppm = spec.camera.pixels_per_metre
        px = np.empty((n, 2))
        px[:, 0] = opos[:, 0] * ppm
        px[:, 1] = (spec.camera.box_height - opos[:, 1]) * ppm
        pv = np.empty((n, 2))
        pv[:, 0] = ovel[:, 0] * ppm
        pv[:, 1] = -ovel[:, 1] * ppm
        return {"positions": px.astype(np.float32), "velocities": pv.astype(np.float32), "angles": oang.astype(np.float32)}

    def events(self, *, final: bool = True) -> list[dict[str, Any]]:
        """Contact, wall and break events so far, sorted by frame. ``final``: the
        episode is over, so contacts still within their first frame are reported
        too (before the end, they are reported once that frame has passed)."""
        if final:
            self._tracker.flush()
        evs = self._tracker.events + self._break_events
        return sorted(evs, key=lambda e: (e["frame"], e["type"], str(e.get("objects", e.get("object")))))

    @property
    def frame(self) -> int:
        return self._frame

    def peak_pane_load(self) -> dict[str, float]:
        """Per pane, the largest impulse (N*s) its welds have had to hold within a
        break window while it was whole: what its strength is compared with."""
        spec = self._require_spec()
        return {spec.objects[p].name: v for p, v in self._peak_load.items()}

    # -- shared physics rules -------------------------------------------------------
    def _current_body_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._states is None:
            self._states = self._body_states()
        return self._states

    def _apply_controls(self) -> None:
        spec = self.spec
        assert spec is not None
        bodies = self._agent_bodies if self._agent is not None else np.array([], int)
        if len(self._friction_bodies):
            bodies = self._friction_bodies
        if not len(bodies):
            return
        vel = self._body_velocities(bodies)
        forces = np.zeros_like(vel)
        mass = self._body_mass[bodies]
        if len(self._friction_bodies):
            # Coulomb friction against the floor; it never reverses a velocity
            # within one step (the force that would just stop the body is the cap).
            mu_g = spec.physics.ground_friction * spec.physics.gravity
            speed = np.linalg.norm(vel, axis=1)
            stop = speed / spec.physics.dt  # deceleration that stops the body in one step
            decel = np.minimum(mu_g, stop)
            with np.errstate(invalid="ignore", divide="ignore"):
                direction = np.where(speed[:, None] > 0, vel / speed[:, None], 0.0)
            forces -= (mass * decel)[:, None] * direction
        if self._agent is not None:
            assert spec.agent is not None
            sel = self._body_obj[bodies] == self._agent
            target = self._action * spec.agent.max_speed
            f = spec.agent.gain * mass[sel, None] * (target - vel[sel])
            norm = np.linalg.norm(f, axis=1, keepdims=True)
            f = f * np.minimum(1.0, spec.agent.max_force / np.maximum(norm, 1e-12))
            if spec.camera.view == "side":  # the agent hovers: its thrust cancels gravity
                f[:, 1] += mass[sel] * spec.physics.gravity
            forces[sel] += f
        self._apply_forces(bodies, forces)

    def _check_panes(self, forces: dict[tuple[int, int], float], dt: float) -> None:
        """Shatter any pane whose welds have to hold more than its strength.

        A whole pane is welded in place, so every push another object gives it, its
        welds must hold: the load is the normal impulse of the contacts between the
        pane and other objects over the last break window. (The constraint forces the
        engines report are not used: they depend on solver iterations and softness,
        e.g. by 3x between 20 and 100 Bullet iterations, where the contact impulse is
        what both engines agree on.) A pane's own weight rests on its welds, not on
        contacts, and only an impact loads it, so the load is tracked only while
        something touches a whole pane, and for one break window after.
        """
        load = np.zeros(len(self._panes))
        for (a, b), f in forces.items():
            for k, p in enumerate(self._panes):
                if self._intact[p] and (a == p or b == p) and a >= 0 and b >= 0:
                    load[k] += f
        if load.any():
            self._load_hot = self._load_window
        elif self._load_hot > 0:
            self._load_hot -= 1
            if self._load_hot == 0:
                self._loads[:] = 0.0
                return
        else:
            return
        self._slot = (self._slot + 1) % self._load_window
        self._loads[self._slot] = load * dt
        windowed = self._loads.sum(0)
        for k, pane in enumerate(self._panes):
            if not self._intact[pane]:
                continue
            self._peak_load[pane] = max(self._peak_load[pane], float(windowed[k]))
            o = self.spec.objects[pane]  # type: ignore[union-attr]
            if windowed[k] > o.pane.strength:  # type: ignore[union-attr]
                self._intact[pane] = False
                self._any_intact = any(self._intact.values())
                self._tracker.debris[pane] = self._tracker.steps
                self._release_welds([i for i, w in enumerate(self._welds) if self._bodies[w.a].obj == pane])
                self._burst(pane, [b for (a, b) in forces if a == pane] + [a for (a, b) in forces if b == pane], float(windowed[k]))
                self._loads[:, k] = 0.0
                self._break_events.append(
                    {
                        "type": "break",
                        "frame": self._frame,
                        "object": o.name,
                        "fragments": o.pane.num_fragments,  # type: ignore[union-attr]
                        "impulse": round(float(windowed[k]), 5),
                    }
                )

    def _burst(self, pane: int, hitters: list[int], impulse: float) -> None:
        """Fragments of a pane that has just shattered fly apart.

        Glass breaks under stress and the strain energy it stored throws the pieces
        out; without it a weakly hit fragile pane would stand as a stack of loose
        fragments and nothing would show the break. Each fragment gets a speed of
        ``impulse / pane mass`` (clipped to 0.5-3 m/s) away from the object that hit
        it, and a spin away from that side. The same rule in both engines.
        """
        spec = self._require_spec()
        frags = np.nonzero(self._body_obj == pane)[0]
        pos, _, _ = self._body_states()
        hit = [h for h in hitters if h >= 0 and h != pane]
        if hit:
            centre = np.mean([pos[self._first_body[h]] for h in hit], axis=0)
        else:
            centre = pos[frags].mean(0)
        away = pos[frags] - centre
        away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-9)
        speed = float(np.clip(impulse / spec.objects[pane].mass, BURST_SPEED[0], BURST_SPEED[1]))
        spin = np.sign(away[:, 1] + 1e-12) * BURST_SPIN * np.sign(away[:, 0] + 1e-12)
        self._add_velocities(frags, speed * away, spin)

    def _require_spec(self) -> SceneSpec:
        if self.spec is None:
            raise RuntimeError("call reset(spec) before stepping or rendering the engine")
        return self.spec

    # -- helpers for implementations ----------------------------------------------
    def camera_target(self) -> tuple[float, float]:
        """Plane point (u, v) at the image centre, including this engine's pixel offset."""
        spec = self._require_spec()
        ppm = spec.camera.pixels_per_metre
        dx, dy = self.pixel_offset
        return (spec.camera.box_width / 2 + dx / ppm, spec.camera.box_height / 2 - dy / ppm)

    def camera_fovy_degrees(self) -> float:
        spec = self._require_spec()
        return 2 * math.degrees(math.atan(spec.camera.box_height / 2 / CAMERA_DISTANCE))

    def walls(self) -> list[tuple[int, tuple[float, float], tuple[float, float]]]:
        """(edge index, centre, half extents) of each wall in the plane."""
        spec = self._require_spec()
        w, h, t = spec.camera.box_width, spec.camera.box_height, WALL_THICKNESS
        geometry = {
            "left": ((-t / 2, h / 2), (t / 2, h / 2 + t)),
            "right": ((w + t / 2, h / 2), (t / 2, h / 2 + t)),
            "bottom": ((w / 2, -t / 2), (w / 2 + t, t / 2)),
            "top": ((w / 2, h + t / 2), (w / 2 + t, t / 2)),
        }
        return [(WALL_EDGES.index(e), *geometry[e]) for e in spec.walls.edges]

    def id_of_object(self, index: int) -> int:
        return index + 1

    def id_of_fixture(self, index: int) -> int:
        return len(self._require_spec().objects) + 1 + index

