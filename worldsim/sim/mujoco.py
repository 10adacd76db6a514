"""MuJoCo implementation of the engine protocol (``engine=mujoco``).

Each body moves on three planar joints (slide along u, slide along v, hinge about
the camera axis), so motion is confined to the plane exactly. Contacts are explicit
``<pair>`` elements with the same combination rules as PyBullet (restitution and
friction multiply). Pane welds are ``<weld>`` equality constraints released at
runtime through ``data.eq_active``.

Restitution. MuJoCo's soft contacts bounce through a spring whose rebound depends
on how deep a body happened to sink in during its last step, so the same drop can
rebound by anything from 0 to 40% more than asked. Here contacts are inelastic and
nearly hard (the solver removes the approaching velocity in one step), and
restitution is applied as Newton's impact law, the way rigid-body engines such as
Bullet do: when a contact appears, the solver's normal impulse ``p`` is followed by
a kick of ``e * p`` through the contact Jacobian, and penetration deeper than a
millimetre is projected out without adding velocity (Bullet's split impulse).
Measured rebound: ``e`` within 0.01 at any speed and arrival phase
(tests/sim/test_engines.py).

Rendering is headless (``MUJOCO_GL=egl`` unless set otherwise) with ambient light
only and shadows, reflections and multisampling off: flat colours at thousands of
frames per second on a CPU. One OpenGL context lives as long as the engine; each
episode's model only gets a fresh ``MjrContext``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software rasteriser: at the small frame sizes used here its worker threads
# cost more than they give, and generation parallelises over processes instead.
os.environ.setdefault("LP_NUM_THREADS", "0")

import logging  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL logs its accelerator at INFO
from worldsim.sim import palette  # noqa: E402
from worldsim.sim.engine import (  # noqa: E402
    BODY_HALF_DEPTH,
    CAMERA_DISTANCE,
    OCCLUDER_DEPTH,
    Body,
    Engine,
    Weld,
    combined_friction,
    combined_restitution,
    wall_key,
)
from worldsim.sim.spec import SceneSpec  # noqa: E402

_CONTACT_SOLIMP = "0.99 0.99 0.001 0.5 2"
_WELD_SOLIMP = "0.9999 0.9999 0.001 0.5 2"  # stiff: a welded pane moves < 0.2 px under a hit
# Contacts: damping 1/dt stops an approaching body in one step; a gentle stiffness
# (negative solref: direct values) lets MuJoCo push resting bodies out of each
# other over about ten steps, its only rebound is taken back by the restitution kick.
CONTACT_STIFFNESS = 4000.0  # 1/s^2
RESTITUTION_MIN_SPEED = 0.1  # m/s: slower impacts do not bounce (as in PyBullet); above g dt, so resting bodies do not
PENETRATION_SLOP = 0.002  # m: deeper penetration is projected out


def _solve_nonnegative(rows: np.ndarray, minv_rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Impulses lam >= 0 along contact normals whose combined effect changes the
    normal quantities by ``target``: (J M^-1 J^T) lam = target (regularised, as
    several points of one face make it singular), with the contacts that would pull
    dropped and the rest solved again."""
    active = np.ones(len(target), dtype=bool)
    lam = np.zeros(len(target))
    for _ in range(len(target)):
        a = rows[active] @ minv_rows[active].T  # Delassus matrix of the active contacts
        a[np.diag_indices_from(a)] += 1e-6 * np.trace(a) / len(a) + 1e-12
        sol = np.linalg.solve(a, target[active])
        lam[:] = 0.0
        lam[active] = sol
        if (sol >= -1e-12).all():
            break
        active &= lam > 0.0
        if not active.any():
            break
    return np.maximum(lam, 0.0)


def _f(*xs: float) -> str:
    return " ".join(f"{x:.9g}" for x in xs)


class MuJoCoEngine(Engine):
    name = "mujoco"
    pixel_offset = (0.0, 0.0)

    def __init__(self, *, segmentation: str = "colour") -> None:
        """``segmentation``: ``"colour"`` reads instance ids off the flat colours of
        the RGB frame (exact here, since every object has its own colour, and half
        the rendering cost); ``"render"`` renders MuJoCo's segmentation pass too."""
        super().__init__()
        if segmentation not in ("colour", "render"):
            raise ValueError(f"segmentation must be 'colour' or 'render', got {segmentation!r}")
        self._segmentation = segmentation
        self._gl: mujoco.GLContext | None = None
        self._gl_size = (0, 0)
        self._con: mujoco.MjrContext | None = None

    def close(self) -> None:
        if self._con is not None and self._gl is not None:
            self._gl.make_current()
            self._con.free()
        self._con = None
        if self._gl is not None:
            self._gl.free()
        self._gl = None

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    # -- build ---------------------------------------------------------------------
    def _xml(self, spec: SceneSpec, bodies: list[Body], welds: list[Weld]) -> str:
        cam = spec.camera
        w, h = cam.box_width, cam.box_height
        dt = spec.physics.dt
        g = spec.physics.gravity if cam.view == "side" else 0.0
        tu, tv = self.camera_target()
        colours = sorted({o.colour for o in spec.objects} | {f.colour for f in spec.fixtures})
        mats = "\n".join(
            f'<material name="{c}" rgba="{_f(*palette.rgba01(c))}" specular="0" shininess="0" reflectance="0"/>'
            for c in colours
        )
        world = []
        # Walls are planes (cheap contacts) along the frame's edges, facing into the
        # box; group 3 is not drawn.
        wall_planes = {0: ((0, 0, h / 2), (1, 0, 0)), 1: ((w, 0, h / 2), (-1, 0, 0)), 2: ((w / 2, 0, 0), (0, 0, 1)), 3: ((w / 2, 0, h), (0, 0, -1))}
        for edge, _, _ in self.walls():
            pos, normal = wall_planes[edge]
            world.append(f'<geom name="wall{edge}" type="plane" group="3" pos="{_f(*pos)}" zaxis="{_f(*normal)}" size="0 0 1"/>')
        for j, f in enumerate(spec.fixtures):
            world.append(
                f'<geom name="fixture{j}" type="box" pos="{_f(f.position[0], OCCLUDER_DEPTH, f.position[1])}" '
                f'size="{_f(f.size[0], 0.01, f.size[1])}" material="{f.colour}"/>'
            )
        pane_objects = {bodies[wd.a].obj for wd in welds}
        contact = f'solref="{_f(-CONTACT_STIFFNESS, -1.0 / dt)}" solimp="{_CONTACT_SOLIMP}"'
        for k, b in enumerate(bodies):
            o = spec.objects[b.obj]
            if b.shape == "sphere":
                geom = f'type="sphere" size="{_f(b.size[0])}"'
            else:
                geom = f'type="box" size="{_f(b.size[0], BODY_HALF_DEPTH, b.size[1])}"'
            if b.obj in pane_objects:
                # Fragments of a pane meet through MuJoCo's broadphase (explicit pairs
                # between every two fragments cost a narrowphase test each step).
                # Welded fragments sit a gap apart, so they only touch once shattered.
                # Friction f*f: the product rule, as MuJoCo combines equal frictions by max.
                mu = combined_friction(o.friction, o.friction)
                bit = 1 << (1 + sorted(pane_objects).index(b.obj))
                geom += f' contype="{bit}" conaffinity="{bit}" condim="3" friction="{_f(mu, 0, 0)}" {contact}'
            world.append(
                f'<body name="b{k}" pos="{_f(b.position[0], 0, b.position[1])}" euler="{_f(0, -b.angle, 0)}">'
                f'<joint name="b{k}x" type="slide" axis="1 0 0"/>'
                f'<joint name="b{k}z" type="slide" axis="0 0 1"/>'
                f'<joint name="b{k}r" type="hinge" axis="0 -1 0"/>'
                + (
                    f'<geom name="g{k}" {geom} mass="{_f(b.mass)}" material="{o.colour}"/>'
                    if not b.visual_pad
                    else f'<geom name="g{k}" {geom} mass="{_f(b.mass)}" group="3"/>'  # collides, hidden
                    f'<geom name="v{k}" type="box" size="{_f(b.size[0] + b.visual_pad, BODY_HALF_DEPTH, b.size[1] + b.visual_pad)}" '
                    f'mass="0" contype="0" conaffinity="0" material="{o.colour}"/>'  # seen, never touches
                )
                + "</body>"
            )
        world.append(f'<camera name="cam" pos="{_f(tu, -CAMERA_DISTANCE, tv)}" xyaxes="1 0 0 0 0 1" fovy="{self.camera_fovy_degrees():.9g}"/>')

        # Explicit contact pairs: bodies of different objects, and bodies and walls.
        tc = 2 * dt
        pairs: list[str] = []

        self._pair_restitution: dict[tuple[str, str], float] = {}

        def pair(g1: str, g2: str, e: float, mu: float) -> None:
            pairs.append(f'<pair geom1="{g1}" geom2="{g2}" condim="3" friction="{_f(mu, mu, 0, 0, 0)}" {contact}/>')
            self._pair_restitution[(g1, g2)] = e

        for i, bi in enumerate(bodies):
            oi = spec.objects[bi.obj]
            for j in range(i + 1, len(bodies)):
                oj = spec.objects[bodies[j].obj]
                e, mu = combined_restitution(oi.restitution, oj.restitution), combined_friction(oi.friction, oj.friction)
                if bi.obj == bodies[j].obj:  # fragments of one pane: broadphase contacts
                    self._pair_restitution[(f"g{i}", f"g{j}")] = e
                    continue
                pair(f"g{i}", f"g{j}", e, mu)
            for edge, _, _ in self.walls():
                pair(
                    f"g{i}",
                    f"wall{edge}",
                    combined_restitution(oi.restitution, spec.walls.restitution),
                    combined_friction(oi.friction, spec.walls.friction),
                )
        eqs = []
        for wd in welds:
            b2 = "" if wd.b is None else f' body2="b{wd.b}"'
            eqs.append(f'<weld body1="b{wd.a}"{b2} solref="{_f(tc, 1.0)}" solimp="{_WELD_SOLIMP}"/>')

        return f"""<mujoco model="worldsim">
<compiler angle="radian" autolimits="true"/>
<statistic extent="1" center="{_f(w / 2, 0, h / 2)}"/>
<option timestep="{dt:.12g}" gravity="0 0 {-g:.9g}" integrator="Euler" cone="elliptic" jacobian="auto">
  <flag contact="enable"/>
</option>
<visual>
  <quality shadowsize="0" offsamples="0"/>
  <headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/>
  <map znear="{CAMERA_DISTANCE - 5.0}" zfar="{CAMERA_DISTANCE + 5.0}"/>
  <global offwidth="{cam.width}" offheight="{cam.height}"/>
</visual>
<default><geom contype="0" conaffinity="0" margin="0"/><joint damping="0" armature="0"/></default>
<asset>
{mats}
</asset>
<worldbody>
{chr(10).join(world)}
</worldbody>
<contact>
{chr(10).join(pairs)}
</contact>
<equality>
{chr(10).join(eqs)}
</equality>
</mujoco>"""

    def _build(self, spec: SceneSpec, bodies: list[Body], welds: list[Weld]) -> None:
        self.xml = self._xml(spec, bodies, welds)
        m = mujoco.MjModel.from_xml_string(self.xml)
        d = mujoco.MjData(m)
        self._m, self._d = m, d
        jid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)  # noqa: E731
        # Body k's joints (slide u, slide v, hinge) are qpos/qvel entries 3k, 3k+1, 3k+2.
        layout = [(m.jnt_qposadr[jid(f"b{k}{a}")], m.jnt_dofadr[jid(f"b{k}{a}")]) for k in range(len(bodies)) for a in "xzr"]
        assert layout == [(i, i) for i in range(3 * len(bodies))] and m.nq == m.nv == 3 * len(bodies)
        self._free_dofs = np.ones(m.nv)  # 0 for the dofs of fragments of a whole pane
        for wd in welds:
            for b in (wd.a, wd.b):
                if b is not None:
                    self._free_dofs[3 * b : 3 * b + 3] = 0.0
        self._vx = np.arange(len(bodies)) * 3
        self._vz = self._vx + 1
        self._p0 = np.array([b.position for b in bodies], dtype=np.float64)
        self._a0 = np.array([b.angle for b in bodies], dtype=np.float64)
        d.qvel[:] = np.array([(b.velocity[0], b.velocity[1], b.angular_velocity) for b in bodies]).reshape(-1)

        # geom id -> contact key and instance id
        gid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n)  # noqa: E731
        self._geom_key = np.full(m.ngeom, np.iinfo(np.int32).min, dtype=np.int64)
        self._geom_iid = np.zeros(m.ngeom + 1, dtype=np.uint8)  # index geom id + 1
        for k, b in enumerate(bodies):
            self._geom_key[gid(f"g{k}")] = b.obj
            self._geom_iid[gid(f"v{k}" if b.visual_pad else f"g{k}") + 1] = self.id_of_object(b.obj)
        for edge, _, _ in self.walls():
            self._geom_key[gid(f"wall{edge}")] = wall_key(edge)
        for j in range(len(spec.fixtures)):
            self._geom_iid[gid(f"fixture{j}") + 1] = self.id_of_fixture(j)
        self._n_welds = len(welds)
        # Restitution per geom pair (symmetric), and contacts seen last step.
        self._restitution = np.zeros((m.ngeom, m.ngeom))
        for (g1, g2), e in self._pair_restitution.items():
            self._restitution[gid(g1), gid(g2)] = self._restitution[gid(g2), gid(g1)] = e
        self._touching: set[int] = set()  # geom-pair codes in contact after the last step
        self._forces: dict[tuple[int, int], float] = {}
        mujoco.mj_forward(m, d)
        self._setup_renderer(spec)

    def _setup_renderer(self, spec: SceneSpec) -> None:
        wh = (spec.camera.width, spec.camera.height)
        if self._gl is None or self._gl_size != wh:
            self.close()
        try:
            if self._gl is None:
                self._gl = mujoco.GLContext(*wh)
                self._gl_size = wh
            self._gl.make_current()
            # Scenes hold only primitive geoms and untextured materials, so one
            # rendering context serves every episode of the same frame size
            # (creating one costs more than rendering a whole episode).
            if self._con is None:
                self._con = mujoco.MjrContext(self._m, mujoco.mjtFontScale.mjFONTSCALE_150.value)
                mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._con)
        except Exception as e:  # mujoco.FatalError included
            self.close()
            raise RuntimeError(
                f"MuJoCo could not render headless ({type(e).__name__}: {e}). worldsim renders with "
                f"MUJOCO_GL=egl (MuJoCo chose its backend from {os.environ.get('MUJOCO_GL')!r} when first imported): "
                "import worldsim before mujoco, or set MUJOCO_GL=egl (or osmesa) in the environment"
            ) from e
        iids = {self.id_of_object(i): palette.rgb(o.colour) for i, o in enumerate(spec.objects)}
        iids.update({self.id_of_fixture(j): palette.rgb(f.colour) for j, f in enumerate(spec.fixtures)})
        self._colour_ids = palette.ColourIds(iids)
        self._scene = mujoco.MjvScene(self._m, maxgeom=self._m.ngeom + 10)
        self._opt = mujoco.MjvOption()
        self._opt.geomgroup[3] = 0
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._cam.fixedcamid = mujoco.mj_name2id(self._m, mujoco.mjtObj.mjOBJ_CAMERA, "cam")
        self._rect = mujoco.MjrRect(0, 0, *wh)
        self._rgb = np.empty((wh[1], wh[0], 3), dtype=np.uint8)
        self._seg = np.empty((wh[1], wh[0], 3), dtype=np.uint8)

    # -- primitives -------------------------------------------------------------------
    def _physics_step(self) -> None:
        """One MuJoCo step, then restitution kicks for contacts that just began and
        penetration projection (see the module docstring); records contact forces."""
        m, d = self._m, self._d
        mujoco.mj_step(m, d)
        n = d.ncon
        if n == 0:
            self._touching = set()
            self._forces = {}
            return
        con = d.contact
        g1, g2 = con.geom1[:n], con.geom2[:n]
        codes = (g1 * m.ngeom + g2).tolist()
        adr = con.efc_address[:n]
        force = d.efc_force[adr]  # normal force of each contact (elliptic cones)
        dist = con.dist[:n]
        touching = self._touching
        new = np.array([c not in touching for c in codes])
        work = np.nonzero((new & (force > 0.0)) | (dist < -PENETRATION_SLOP))[0]
        if len(work):
            force = force.copy()
            # A whole pane is welded to the floor: to a kick or a projection it is
            # part of the world, so only the other body moves (moving one welded
            # fragment alone would fight its welds).
            rows = self._jacobian_rows(adr[work]) * self._free_dofs  # (K, nv) contact normals
            minv_rows = np.empty_like(rows)
            mujoco.mj_solveM(m, d, minv_rows, rows)  # M^-1 J^T, row by row
            jmj = np.einsum("kv,kv->k", rows, minv_rows)  # inverse effective mass along each normal
            ok = jmj > 1e-12
            dt = m.opt.timestep
            depth = np.maximum(-dist[work], 0.0)
            p = force[work] * dt  # the solver's normal impulse this step
            dv_solver = p * jmj  # the normal speed it took away: the impact speed
            impact = ok & new[work] & (p > 0.0) & (dv_solver > RESTITUTION_MIN_SPEED)
            # Penetration is projected out without adding velocity: fully for a new
            # impact, beyond the slop for a lasting contact. Contacts are solved
            # together (a box on two fragments, two points of one face).
            target = np.where(impact, 0.0, PENETRATION_SLOP / 2)
            proj = ok & (depth > np.where(impact, 0.0, PENETRATION_SLOP))
            if proj.any():
                mu = _solve_nonnegative(rows[proj], minv_rows[proj], (depth - target)[proj])
                d.qpos[:] += mu @ minv_rows[proj]  # planar joints: integrating positions is adding
            # Restitution (Newton): the normal speed after an impact is e times the
            # speed before it. A body crossed the surface depth / speed before this
            # step began (contacts are found at the start of a step) and then sat still
            # for the step, so it has been moving out for that long already.
            e = self._restitution[g1[work], g2[work]]
            kick = impact & (e > 0.0)
            if kick.any():
                v_post = rows[kick] @ d.qvel  # normal speeds after the solver (> 0: apart)
                v_pre = v_post - dv_solver[kick]
                lam = _solve_nonnegative(rows[kick], minv_rows[kick], -e[kick] * v_pre - v_post)
                tau = np.clip(depth[kick] / np.maximum(-v_pre, 1e-9), 0.0, dt) + dt
                d.qvel[:] += lam @ minv_rows[kick]
                d.qpos[:] += (lam * tau) @ minv_rows[kick]
                force[work[kick]] += lam / dt
                self._kick_friction(work[kick], lam, tau)
        self._touching = set(codes)
        self._forces = self._pair_forces(self._geom_key[g1], self._geom_key[g2], force)

    def _kick_friction(self, contacts: np.ndarray, lam: np.ndarray, tau: np.ndarray) -> None:
        """Coulomb friction for the restitution kick: up to mu * lam against the
        sliding velocity, as rigid solvers bound friction by the whole normal impulse."""
        m, d = self._m, self._d
        con = d.contact
        for i, li, ti in zip(contacts.tolist(), lam.tolist(), tau.tolist()):
            mu = float(con.friction[i][0])
            if li <= 0.0 or mu <= 0.0 or con.dim[i] < 3:
                continue
            for r in (1, 2):  # the two tangent rows follow the normal row; one lies in the plane
                row = self._jacobian_rows(np.array([con.efc_address[i] + r]))[0] * self._free_dofs
                minv = np.zeros((1, m.nv))
                mujoco.mj_solveM(m, d, minv, row.reshape(1, -1))
                k = float(row @ minv[0])
                if k <= 1e-12:
                    continue
                f = float(np.clip(-(row @ d.qvel) / k, -mu * li, mu * li))
                d.qvel[:] += f * minv[0]
                d.qpos[:] += f * ti * minv[0]

    def _jacobian_rows(self, rows: np.ndarray) -> np.ndarray:
        """Dense rows of the constraint Jacobian (MuJoCo stores it sparse for big models)."""
        m, d = self._m, self._d
        if not mujoco.mj_isSparse(m):
            return d.efc_J.reshape(d.nefc, m.nv)[rows]
        out = np.zeros((len(rows), m.nv))
        for k, r in enumerate(rows.tolist()):
            a, nnz = d.efc_J_rowadr[r], d.efc_J_rownnz[r]
            out[k, d.efc_J_colind[a : a + nnz]] = d.efc_J[a : a + nnz]
        return out

    @staticmethod
    def _pair_forces(ka: np.ndarray, kb: np.ndarray, force: np.ndarray) -> dict[tuple[int, int], float]:
        """Sum contact forces per (object, object or wall) pair, object first."""
        keep = (force > 0.0) & (ka != kb)
        if not keep.any():
            return {}
        ka, kb, force = ka[keep], kb[keep], force[keep]
        swap = (ka < 0) | ((kb >= 0) & (kb < ka))
        a, b = np.where(swap, kb, ka), np.where(swap, ka, kb)
        out: dict[tuple[int, int], float] = {}
        for x, y, f in zip(a.tolist(), b.tolist(), force.tolist()):
            out[(x, y)] = out.get((x, y), 0.0) + f
        return out

    def _body_velocities(self, bodies: np.ndarray) -> np.ndarray:
        qv = self._d.qvel
        return np.stack([qv[self._vx[bodies]], qv[self._vz[bodies]]], 1)

    def _apply_forces(self, bodies: np.ndarray, forces: np.ndarray) -> None:
        self._d.qfrc_applied[self._vx[bodies]] = forces[:, 0]
        self._d.qfrc_applied[self._vz[bodies]] = forces[:, 1]

    def _body_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self._d.qpos.reshape(-1, 3)
        qv = self._d.qvel.reshape(-1, 3)
        return self._p0 + q[:, :2], qv[:, :2].copy(), self._a0 + q[:, 2]

    def _contact_forces(self) -> dict[tuple[int, int], float]:
        return self._forces

    def _release_welds(self, welds: list[int]) -> None:
        self._d.eq_active[welds] = 0
        for k in welds:
            for b in (self._welds[k].a, self._welds[k].b):
                if b is not None:
                    self._free_dofs[3 * b : 3 * b + 3] = 1.0

    def _add_velocities(self, bodies: np.ndarray, dv: np.ndarray, dw: np.ndarray) -> None:
        qv = self._d.qvel.reshape(-1, 3)
        qv[bodies, :2] += dv
        qv[bodies, 2] += dw

    def _move_bodies(self, bodies: np.ndarray, offsets: np.ndarray) -> None:
        q = self._d.qpos.reshape(-1, 3)
        q[bodies, :2] += offsets

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self._require_spec()
        m, d = self._m, self._d
        assert self._gl is not None and self._con is not None
        self._gl.make_current()
        mujoco.mj_kinematics(m, d)  # mj_step leaves body poses one step behind qpos
        mujoco.mjv_updateScene(m, d, self._opt, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene)
        mujoco.mjr_render(self._rect, self._scene, self._con)
        mujoco.mjr_readPixels(self._rgb, None, self._rect, self._con)
        rgb = np.flipud(self._rgb).copy()
        if self._segmentation == "colour":
            return rgb, self._colour_ids(rgb)
        # Segmentation pass: every geom drawn in a colour that encodes its segid.
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
        flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
        mujoco.mjr_render(self._rect, self._scene, self._con)
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
        flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
        mujoco.mjr_readPixels(self._seg, None, self._rect, self._con)
        s = self._seg.astype(np.int32)
        segid = s[..., 0] + (s[..., 1] << 8) + (s[..., 2] << 16)  # 0 = background, else segid + 1
        ng = self._scene.ngeom
        lut = np.zeros(ng + 1, dtype=np.uint8)
        geoms = self._scene.geoms
        for i in range(ng):
            g = geoms[i]
            if g.segid >= 0 and g.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lut[g.segid + 1] = self._geom_iid[g.objid + 1]
        ids = np.flipud(lut[np.clip(segid, 0, ng)]).copy()
        if palette.BACKGROUND != (0, 0, 0):  # MuJoCo clears to black
            rgb[ids == 0] = palette.BACKGROUND
        return rgb, ids
