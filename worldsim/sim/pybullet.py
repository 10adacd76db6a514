"""PyBullet implementation of the engine protocol (``engine=pybullet``).

Rendering uses PyBullet's CPU TinyRenderer with ambient light only, which gives
exactly ``round(rgba * 255)`` per object with no shading, shadows or antialiasing,
and a segmentation buffer of body ids. (PyBullet's OpenGL renderer returns blank
images in DIRECT mode, and TinyRenderer ignores orthographic projections, so the
camera is a narrow perspective one far away.)

Physics notes. ``contactERP=0`` keeps Bullet from adding velocity to push
penetrating bodies apart, without which a restitution of 0.95 bounces back higher
than it fell. Bodies are free rigid bodies; everything that acts on them (gravity,
contact normals between bodies centred on the plane, applied forces) lies in the
plane, so motion stays in it (checked in tests to 1e-9 m).
"""

from __future__ import annotations

import math

import numpy as np

from worldsim.sim.quiet import quiet_stdout

with quiet_stdout():  # its C extension prints its build time on import
    import pybullet as pb

from worldsim.sim import palette
from worldsim.sim.engine import (
    BODY_HALF_DEPTH,
    CAMERA_DISTANCE,
    OCCLUDER_DEPTH,
    Body,
    Engine,
    Weld,
    wall_key,
)
from worldsim.sim.spec import SceneSpec

_BACKGROUND_WORD = np.array([*palette.BACKGROUND, 255], np.uint8).view(np.uint32)[0]
# Unit normal (u, v) pointing into the box from each wall, by WALL_EDGES index.
_INWARD_NORMAL = {0: (1.0, 0.0), 1: (-1.0, 0.0), 2: (0.0, 1.0), 3: (0.0, -1.0)}


def _quat(angle: float) -> tuple[float, float, float, float]:
    # Counter-clockwise in the image (camera looks along +y, z up) is a rotation about -y.
    return pb.getQuaternionFromEuler((0.0, -angle, 0.0))


class PyBulletEngine(Engine):
    name = "pybullet"
    # TinyRenderer samples pixels at their corners, not their centres.
    pixel_offset = (0.5, -0.5)

    def __init__(self, *, solver_iterations: int = 20, weld_iterations: int = 100) -> None:
        """``solver_iterations``: Bullet's constraint solver iterations per physics
        step; ``weld_iterations`` while a welded pane stands (with fewer, a ball
        bouncing off a welded fragment loses most of its restitution: 20 iterations
        return a third of the rebound speed, 100 all of it)."""
        super().__init__()
        self._client = pb.connect(pb.DIRECT)
        self._solver_iterations = solver_iterations
        self._weld_iterations = weld_iterations

    def close(self) -> None:
        if self._client is not None and pb.isConnected(self._client):
            pb.disconnect(self._client)
        self._client = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # -- build ---------------------------------------------------------------------
    def _build(self, spec: SceneSpec, bodies: list[Body], welds: list[Weld]) -> None:
        if self._client is None:  # closed earlier: reconnect
            self._client = pb.connect(pb.DIRECT)
        c = self._client
        pb.resetSimulation(physicsClientId=c)
        pb.setPhysicsEngineParameter(
            fixedTimeStep=spec.physics.dt,
            numSubSteps=0,
            numSolverIterations=self._weld_iterations if welds else self._solver_iterations,
            contactERP=0.0,
            restitutionVelocityThreshold=0.1,  # as MuJoCo's RESTITUTION_MIN_SPEED
            physicsClientId=c,
        )
        g = spec.physics.gravity if spec.camera.view == "side" else 0.0
        pb.setGravity(0.0, 0.0, -g, physicsClientId=c)

        # Instance-id lookup: pybullet body uid -> our id (0 = background).
        self._uid_to_id: dict[int, int] = {}
        self._uid_to_key: dict[int, int] = {}  # body uid -> contact key (object index)

        # The walls: one static compound body with no visual shape (they lie outside
        # the view). Which wall a contact touches is read off the contact normal.
        walls = self.walls()
        self._walls_uid = -2
        self._wall_keys = np.array([wall_key(e) for e, _, _ in walls])
        self._wall_normals = np.array([_INWARD_NORMAL[e] for e, _, _ in walls], dtype=np.float64)
        if walls:
            shape = pb.createCollisionShapeArray(
                [pb.GEOM_BOX] * len(walls),
                halfExtents=[(half[0], 5.0, half[1]) for _, _, half in walls],
                collisionFramePositions=[(centre[0], 0.0, centre[1]) for _, centre, _ in walls],
                physicsClientId=c,
            )
            self._walls_uid = pb.createMultiBody(0.0, shape, -1, physicsClientId=c)
            pb.changeDynamics(
                self._walls_uid, -1, restitution=spec.walls.restitution, lateralFriction=spec.walls.friction, physicsClientId=c
            )

        for j, f in enumerate(spec.fixtures):
            fvis = pb.createVisualShape(
                pb.GEOM_BOX, halfExtents=(f.size[0], 0.01, f.size[1]), rgbaColor=palette.rgba01(f.colour), physicsClientId=c
            )
            uid = pb.createMultiBody(0.0, -1, fvis, basePosition=(f.position[0], OCCLUDER_DEPTH, f.position[1]), physicsClientId=c)
            self._uid_to_id[uid] = self.id_of_fixture(j)

        self._uids = []
        for b in bodies:
            o = spec.objects[b.obj]
            rgba = palette.rgba01(o.colour)
            if b.shape == "sphere":
                col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=b.size[0], physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=b.size[0], rgbaColor=rgba, physicsClientId=c)
            else:
                half = (b.size[0], BODY_HALF_DEPTH, b.size[1])
                seen = (b.size[0] + b.visual_pad, BODY_HALF_DEPTH, b.size[1] + b.visual_pad)
                col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=seen, rgbaColor=rgba, physicsClientId=c)
            uid = pb.createMultiBody(
                b.mass, col, vis, basePosition=(b.position[0], 0.0, b.position[1]), baseOrientation=_quat(b.angle), physicsClientId=c
            )
            pb.changeDynamics(
                uid,
                -1,
                restitution=o.restitution,
                lateralFriction=o.friction,
                rollingFriction=0.0,
                spinningFriction=0.0,
                linearDamping=0.0,
                angularDamping=0.0,
                physicsClientId=c,
            )
            pb.resetBaseVelocity(
                uid, (b.velocity[0], 0.0, b.velocity[1]), (0.0, -b.angular_velocity, 0.0), physicsClientId=c
            )
            self._uid_to_id[uid] = self.id_of_object(b.obj)
            self._uid_to_key[uid] = b.obj
            self._uids.append(uid)

        # Welds hold every fragment of a whole pane in place (a gap apart: they
        # cannot touch until the pane shatters).
        self._weld_ids = []
        for wd in welds:
            a = self._uids[wd.a]
            pa, _ = pb.getBasePositionAndOrientation(a, physicsClientId=c)
            if wd.b is None:
                cid = pb.createConstraint(a, -1, -1, -1, pb.JOINT_FIXED, (0, 0, 0), (0, 0, 0), pa, physicsClientId=c)
            else:
                bb = self._uids[wd.b]
                pbb, _ = pb.getBasePositionAndOrientation(bb, physicsClientId=c)
                rel = (pbb[0] - pa[0], pbb[1] - pa[1], pbb[2] - pa[2])
                cid = pb.createConstraint(a, -1, bb, -1, pb.JOINT_FIXED, (0, 0, 0), rel, (0, 0, 0), physicsClientId=c)
            pb.changeConstraint(cid, maxForce=1e7, physicsClientId=c)
            self._weld_ids.append(cid)
        lut = np.zeros(pb.getNumBodies(physicsClientId=c) + 1, dtype=np.uint8)  # index uid + 1; -1 = nothing
        for uid, iid in self._uid_to_id.items():
            lut[uid + 1] = iid
        self._seg_lut = lut

        # Camera: far away on -y, looking at the plane, z up.
        tu, tv = self.camera_target()
        self._view = pb.computeViewMatrix((tu, -CAMERA_DISTANCE, tv), (tu, 0.0, tv), (0.0, 0.0, 1.0), physicsClientId=c)
        self._proj = pb.computeProjectionMatrixFOV(
            self.camera_fovy_degrees(), spec.camera.width / spec.camera.height, CAMERA_DISTANCE - 5.0, CAMERA_DISTANCE + 5.0,
            physicsClientId=c,
        )

    # -- primitives -------------------------------------------------------------------
    def _physics_step(self) -> None:
        pb.stepSimulation(physicsClientId=self._client)

    def _body_velocities(self, bodies: np.ndarray) -> np.ndarray:
        out = np.empty((len(bodies), 2))
        for k, b in enumerate(bodies):
            v, _ = pb.getBaseVelocity(self._uids[b], physicsClientId=self._client)
            out[k] = (v[0], v[2])
        return out

    def _apply_forces(self, bodies: np.ndarray, forces: np.ndarray) -> None:
        c = self._client
        for b, f in zip(bodies, forces):
            uid = self._uids[b]
            pos, _ = pb.getBasePositionAndOrientation(uid, physicsClientId=c)
            pb.applyExternalForce(uid, -1, (f[0], 0.0, f[1]), pos, pb.WORLD_FRAME, physicsClientId=c)

    def _body_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self._client
        n = len(self._uids)
        pos, vel, ang = np.empty((n, 2)), np.empty((n, 2)), np.empty(n)
        for k, uid in enumerate(self._uids):
            p, q = pb.getBasePositionAndOrientation(uid, physicsClientId=c)
            v, _ = pb.getBaseVelocity(uid, physicsClientId=c)
            pos[k] = (p[0], p[2])
            vel[k] = (v[0], v[2])
            # In-plane angle: rotation about -y; read it off the rotated x axis.
            x, y, z, w = q
            ax_x = 1 - 2 * (y * y + z * z)
            ax_z = 2 * (x * z - w * y)
            ang[k] = math.atan2(ax_z, ax_x)
        return pos, vel, ang

    def _contact_forces(self) -> dict[tuple[int, int], float]:
        out: dict[tuple[int, int], float] = {}
        keys = self._uid_to_key
        walls = self._walls_uid
        for cp in pb.getContactPoints(physicsClientId=self._client):
            f = cp[9]
            if f <= 0.0:
                continue
            ua, ub = cp[1], cp[2]
            if ua == walls or ub == walls:
                # contactNormalOnB points from B to A; orient it into the box.
                n = cp[7]
                sign = 1.0 if ub == walls else -1.0
                wall = int(self._wall_keys[np.argmax(self._wall_normals @ (sign * n[0], sign * n[2]))])
                obj = keys.get(ua if ub == walls else ub)
                if obj is None:
                    continue
                key = (obj, wall)
            else:
                a, b = keys.get(ua), keys.get(ub)
                if a is None or b is None or a == b:
                    continue
                key = (a, b) if a < b else (b, a)
            out[key] = out.get(key, 0.0) + f
        return out

    def _release_welds(self, welds: list[int]) -> None:
        c = self._client
        for k in welds:
            cid = self._weld_ids[k]
            if cid is not None:
                pb.removeConstraint(cid, physicsClientId=c)
                self._weld_ids[k] = None
        if all(cid is None for cid in self._weld_ids):
            pb.setPhysicsEngineParameter(numSolverIterations=self._solver_iterations, physicsClientId=c)

    def _add_velocities(self, bodies: np.ndarray, dv: np.ndarray, dw: np.ndarray) -> None:
        c = self._client
        for b, v, w in zip(bodies, dv, dw):
            uid = self._uids[b]
            lin, ang = pb.getBaseVelocity(uid, physicsClientId=c)
            pb.resetBaseVelocity(uid, (lin[0] + v[0], 0.0, lin[2] + v[1]), (0.0, ang[1] - w, 0.0), physicsClientId=c)

    def _move_bodies(self, bodies: np.ndarray, offsets: np.ndarray) -> None:
        c = self._client
        for b, d in zip(bodies, offsets):
            uid = self._uids[b]
            p, q = pb.getBasePositionAndOrientation(uid, physicsClientId=c)
            pb.resetBasePositionAndOrientation(uid, (p[0] + d[0], p[1], p[2] + d[1]), q, physicsClientId=c)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        spec = self._require_spec()
        _, _, rgba, _, seg = pb.getCameraImage(
            spec.camera.width,
            spec.camera.height,
            self._view,
            self._proj,
            renderer=pb.ER_TINY_RENDERER,
            shadow=0,
            lightAmbientCoeff=1.0,
            lightDiffuseCoeff=0.0,
            lightSpecularCoeff=0.0,
            physicsClientId=self._client,
        )
        h, w = spec.camera.height, spec.camera.width
        seg = np.asarray(seg).reshape(h, w)
        # TinyRenderer clears to white; painting the background from the
        # segmentation costs far less than rendering a backdrop. Whole RGBA pixels
        # are handled as uint32 words, which numpy does much faster than 3 channels.
        # Walls (no visual shape, drawn from their collision shape) map to id 0 too.
        ids = self._seg_lut.take(seg + 1)
        words = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4).view(np.uint32)[..., 0]
        words = np.where(ids == 0, _BACKGROUND_WORD, words)
        rgb = np.ascontiguousarray(words.view(np.uint8).reshape(h, w, 4)[..., :3])
        return rgb, ids
