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

import numpy as np  # noqa: E402

import mujoco  # noqa: E402
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

# Contacts: stiffness ~0 and damping 1/dt (negative solref = direct values), so the
# solver stops an approaching body in one step without a spring that bounces.
_CONTACT_SOLIMP = "0.99 0.99 0.001 0.5 2"
_WELD_SOLIMP = "0.99 0.99 0.001 0.5 2"
RESTITUTION_MIN_SPEED = 0.02  # m/s: slower impacts do not bounce (as in PyBullet)
PENETRATION_SLOP = 0.001  # m: deeper penetration is projected out


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
        for edge, centre, half in self.walls():  # outside the view; group 3 is not drawn
            world.append(
                f'<geom name="wall{edge}" type="box" group="3" pos="{_f(centre[0], 0, centre[1])}" '
                f'size="{_f(half[0], 5.0, half[1])}" rgba="0 0 0 1"/>'
            )
        for j, f in enumerate(spec.fixtures):
            world.append(
                f'<geom name="fixture{j}" type="box" pos="{_f(f.position[0], OCCLUDER_DEPTH, f.position[1])}" '
                f'size="{_f(f.size[0], 0.01, f.size[1])}" material="{f.colour}"/>'
            )
        for k, b in enumerate(bodies):
            o = spec.objects[b.obj]
            if b.shape == "sphere":
                geom = f'type="sphere" size="{_f(b.size[0])}"'
            else:
                geom = f'type="box" size="{_f(b.size[0], BODY_HALF_DEPTH, b.size[1])}"'
            world.append(
                f'<body name="b{k}" pos="{_f(b.position[0], 0, b.position[1])}" euler="{_f(0, -b.angle, 0)}">'
                f'<joint name="b{k}x" type="slide" axis="1 0 0"/>'
                f'<joint name="b{k}z" type="slide" axis="0 0 1"/>'
                f'<joint name="b{k}r" type="hinge" axis="0 -1 0"/>'
                f'<geom name="g{k}" {geom} mass="{_f(b.mass)}" material="{o.colour}"/>'
                f"</body>"
            )
        world.append(f'<camera name="cam" pos="{_f(tu, -CAMERA_DISTANCE, tv)}" xyaxes="1 0 0 0 0 1" fovy="{self.camera_fovy_degrees():.9g}"/>')

        # Contact pairs: object-object (fragments of one pane too: welded fragments
        # sit a gap apart, so they only touch once the pane has shattered), object-wall.
        tc = 2 * dt
        pairs: list[str] = []

        self._pair_restitution: dict[tuple[str, str], float] = {}

        def pair(g1: str, g2: str, e: float, mu: float) -> None:
            pairs.append(
                f'<pair geom1="{g1}" geom2="{g2}" condim="3" friction="{_f(mu, mu, 0, 0, 0)}" '
                f'solref="{_f(-1.0, -1.0 / dt)}" solimp="{_CONTACT_SOLIMP}"/>'
            )
            self._pair_restitution[(g1, g2)] = e

        for i, bi in enumerate(bodies):
            oi = spec.objects[bi.obj]
            for j in range(i + 1, len(bodies)):
                oj = spec.objects[bodies[j].obj]
                pair(f"g{i}", f"g{j}", combined_restitution(oi.restitution, oj.restitution), combined_friction(oi.friction, oj.friction))
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
<option timestep="{dt:.12g}" gravity="0 0 {-g:.9g}" integrator="Euler" cone="elliptic" jacobian="dense">
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
            self._geom_iid[gid(f"g{k}") + 1] = self.id_of_object(b.obj)
        for edge, _, _ in self.walls():
            self._geom_key[gid(f"wall{edge}")] = wall_key(edge)
        for j in range(len(spec.fixtures)):
            self._geom_iid[gid(f"fixture{j}") + 1] = self.id_of_fixture(j)
        self._n_welds = len(welds)
        # Restitution per geom pair (symmetric), and contacts seen last step.
        self._restitution = np.zeros((m.ngeom, m.ngeom))
        for (g1, g2), e in self._pair_restitution.items():
            self._restitution[gid(g1), gid(g2)] = self._restitution[gid(g2), gid(g1)] = e
        self._touching: set[tuple[int, int]] = set()
        self._forces: dict[tuple[int, int], float] = {}
        mujoco.mj_forward(m, d)
        self._setup_renderer(spec)

    def _setup_renderer(self, spec: SceneSpec) -> None:
        wh = (spec.camera.width, spec.camera.height)
        if self._gl is None or self._gl_size != wh:
            self.close()
            try:
                self._gl = mujoco.GLContext(*wh)
            except Exception as e:  # pragma: no cover - depends on the machine
                raise RuntimeError(
                    f"MuJoCo could not create an OpenGL context ({e}). worldsim renders headless with "
                    f"MUJOCO_GL=egl (now {os.environ.get('MUJOCO_GL')!r}); set it, or MUJOCO_GL=osmesa, before "
                    "mujoco is first imported"
                ) from e
            self._gl_size = wh
        self._gl.make_current()
        # Scenes hold only primitive geoms and untextured materials, so one
        # rendering context serves every episode of the same frame size (creating
        # one costs more than rendering a whole episode).
        if self._con is None:
            self._con = mujoco.MjrContext(self._m, mujoco.mjtFontScale.mjFONTSCALE_150.value)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._con)
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
        self._forces = {}
        n = d.ncon
        if n == 0:
            self._touching = set()
            return
        dt = m.opt.timestep
        con = d.contact
        g1, g2 = con.geom1[:n].tolist(), con.geom2[:n].tolist()
        adr = con.efc_address[:n]
        force = d.efc_force[adr].copy()
        dist = con.dist[:n]
        touching = set(zip(g1, g2))
        jac = None
        for i in range(n):
            new = (g1[i], g2[i]) not in self._touching
            if not (new and force[i] > 0.0) and dist[i] >= -PENETRATION_SLOP:
                continue
            if jac is None:
                jac = d.efc_J.reshape(d.nefc, m.nv)
            row = jac[adr[i]]
            minv_row = np.zeros((1, m.nv))
            mujoco.mj_solveM(m, d, minv_row, row.reshape(1, -1))
            minv_row = minv_row[0]
            jmj = float(row @ minv_row)  # inverse effective mass along the normal
            if new and force[i] > 0.0:
                e = self._restitution[g1[i], g2[i]]
                p = force[i] * dt  # the solver's normal impulse this step
                if e > 0.0 and p * jmj > RESTITUTION_MIN_SPEED:
                    kick = (e * p) * minv_row
                    d.qvel[:] += kick
                    mujoco.mj_integratePos(m, d.qpos, kick, dt)
                    force[i] += e * force[i]
            if dist[i] < -PENETRATION_SLOP:
                depth = -dist[i] - PENETRATION_SLOP / 2
                mujoco.mj_integratePos(m, d.qpos, (depth / jmj) * minv_row, 1.0)
        self._touching = touching
        k1 = self._geom_key[g1]
        k2 = self._geom_key[g2]
        out = self._forces
        for a, b, fn in zip(k1.tolist(), k2.tolist(), force.tolist()):
            if fn <= 0.0 or a == b:
                continue
            if a < 0 or (b >= 0 and b < a):
                a, b = b, a
            out[(a, b)] = out.get((a, b), 0.0) + fn

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

    def _weld_forces(self) -> np.ndarray:
        d = self._d
        out = np.zeros(self._n_welds)
        rows = np.nonzero(d.efc_type[: d.nefc] == mujoco.mjtConstraint.mjCNSTR_EQUALITY)[0]
        if len(rows):
            ids = d.efc_id[rows]
            f = d.efc_force[rows]
            # Each active weld owns 6 consecutive rows: 3 translational, 3 rotational.
            ids6 = ids.reshape(-1, 6)[:, 0]
            f3 = f.reshape(-1, 6)[:, :3]
            out[ids6] = np.sqrt((f3 * f3).sum(1))
        return out

    def _release_welds(self, welds: list[int]) -> None:
        self._d.eq_active[welds] = 0

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
