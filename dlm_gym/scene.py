"""The pymunk sagittal scene: ground, one polygonal object, point fingers.

This is the only physics of the project's environment. The object is a
dynamic rigid body under gravity resting on or above a solid ground with
friction; a non-convex polygon becomes several convex pymunk shapes on one
body. Each finger is a small circle of infinite moment (so it grips instead
of rolling) that feels no gravity and is driven by an **impedance servo**
(docs/design.md section 2): a virtual anchor is placed at ``c + lambda_c / K``,
with ``c`` the finger centre one radius behind the contact point ``p_c``, and
pulls the finger with a critically damped spring of stiffness ``K``. When the
finger touches the object it therefore pushes with ``lambda_c`` while staying
at ``p_c``; pure position control could not squeeze.

Finger commands are per keyframe: ``(x, y, f_x, f_y)`` for each finger, the
contact point in metres and the force on the object in newtons (world frame).
:meth:`Scene.place_fingers` puts the fingers at a keyframe command;
:meth:`Scene.run_interval` then sweeps the commands linearly to the next
keyframe command while the physics advances by ``dt`` (this is why
:mod:`dlm_gym.dynamics` models contact forces as piecewise linear in time).

**What no command can do** (the rules that keep the benchmark honest; since
version 0.2 of the physics, see the env's Version History):

- *A finger never works from inside the object.* At every substep (and at
  placement) a commanded contact point that lies inside the object, at the
  object's pose at that instant, is replaced by the nearest point of the
  object's surface. Penetration resolution would otherwise turn an interior
  command into a grip that no real finger could make. How far each finger's
  command was moved is reported (:attr:`Scene.projection_distance`).
- *The servo force is bounded.* Each component of the force the servo puts
  on a finger is clipped to ``+-config.force_limit`` (40 N), the same box the
  commanded forces live in, so a finger blocked by the object (a command on
  its far side, say) pushes no harder than a legal command could.
- *Fingers and the object cannot enter the ground, nor fingers the object.*
  The ground is a solid block 1 m deep whose top face is y = 0; fingers
  collide with it, and a finger centre is never commanded below one finger
  radius above it. A body moving at v enters another by up to v h in the
  substep it arrives (h = 2 ms), before the solver can stop it; so after
  every substep an object vertex more than 1 mm inside the ground, or a
  finger centre more than 1 mm inside the object or below its lowest
  position, is moved back out (the solver has already stopped the approach).

The servo is computed in Python once per substep (2 ms) and handed to pymunk
as a force: ``u* = v_a + (u - v_a) exp(-D h / m_f) + (K h / m_f) (a - x - u h)``
is the finger velocity a damped spring would give (damped exactly, the spring
evaluated where the finger will be after the position update), and the force
``m_f (u* - u) / h``, clipped, realises it. The finger's weight is cancelled
by an extra ``m_f g`` upwards. :mod:`policies.dlm.diffsim` mirrors this servo
term for term in torch.
"""

from __future__ import annotations

import math

import numpy as np
import pymunk
import pymunk.autogeometry

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import nearest_boundary_point, polar_moment

__all__ = ["Scene", "convex_pieces", "FORCE_SCALE_FLOOR"]

# pymunk's public accessors build a Vec2d or a named tuple per call; the servo runs 400 times per
# episode and finger, so it talks to chipmunk directly (pymunk's own cffi bindings).
from pymunk._chipmunk import ffi as _ffi
from pymunk._chipmunk import lib as _cp

# Collision categories: the object meets the ground and the fingers; fingers meet the object and the
# ground but not each other (two fingers must never push on each other).
_GROUND, _OBJECT, _FINGER = 0b001, 0b010, 0b100
_PARKED = pymunk.ShapeFilter(categories=0, mask=0)
_PARK_POSITION = (0.0, -10.0)  # far below the ground block, out of everything's way
_GROUND_DEPTH = 1.0  # m: deep enough that no vertex can tunnel through the block in a substep
_SINK_TOLERANCE = 1e-3  # m a vertex (finger rim) may be inside the ground (object) after a substep; 2 mm promised
_CONTACT_BIAS = 0.2  # share of an overlap pushed out per substep (policies.dlm.diffsim's ContactModel uses the same)
FORCE_SCALE_FLOOR = 1.0  # N: below this the finger-radius offset fades out


def convex_pieces(polygon: np.ndarray) -> list[list[tuple[float, float]]]:
    """Split a simple CCW polygon into convex pieces for pymunk (itself if convex)."""
    v = [(float(x), float(y)) for x, y in polygon]
    edges = np.roll(polygon, -1, axis=0) - polygon
    turns = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    if np.all(turns > 0):
        return [v]
    pieces = pymunk.autogeometry.convex_decomposition(v + [v[0]], 0.0)
    return [[(p.x, p.y) for p in piece[:-1]] for piece in pieces]


class Scene:
    """A pymunk space with the ground, an object and ``config.num_fingers`` fingers.

    Typical use::

        scene = Scene(config)
        scene.reset(task.polygon, task.trajectory[0])
        scene.place_fingers(commands[0])                # keyframe 0
        for k in range(1, T):
            scene.run_interval(commands[k - 1], commands[k])
            pose = scene.object_pose                    # simulated r*(k)
    """

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.polygon: np.ndarray | None = None
        self.object: pymunk.Body | None = None
        self._build_space()

    def _build_space(self) -> None:
        """A new space with the ground and parked fingers.

        Built afresh on every reset: pymunk's solver order depends on the
        history of shapes added and removed, and a reused space would make
        results depend on the episodes played before.
        """
        cfg = self.config
        self.space = pymunk.Space()
        self.space.gravity = (0.0, -cfg.gravity)
        # pymunk's defaults are tuned for pixels; in metres 0.1 of slop would be 10 cm.
        self.space.collision_slop = 1e-4
        self.space.iterations = 30
        self.space.collision_bias = (1.0 - _CONTACT_BIAS) ** (1.0 / cfg.substep_dt)  # chipmunk's unit: per second
        ground = pymunk.Poly(
            self.space.static_body, [(-50.0, -_GROUND_DEPTH), (50.0, -_GROUND_DEPTH), (50.0, 0.0), (-50.0, 0.0)]
        )
        ground.friction = cfg.ground_friction  # contact friction is the product: ground x 1
        ground.filter = pymunk.ShapeFilter(categories=_GROUND, mask=_OBJECT | _FINGER)
        self.space.add(ground)

        self.fingers: list[pymunk.Body] = []
        self._finger_shapes: list[pymunk.Circle] = []
        for _ in range(cfg.num_fingers):
            body = pymunk.Body(cfg.finger_mass, math.inf)
            body.position = _PARK_POSITION
            shape = pymunk.Circle(body, cfg.finger_radius)
            shape.friction = cfg.finger_friction
            shape.filter = _PARKED
            self.space.add(body, shape)
            self.fingers.append(body)
            self._finger_shapes.append(shape)
        self._pieces: list[pymunk.Poly] = []
        self._query = _ffi.new("cpPointQueryInfo *")
        self._forces = np.zeros((cfg.num_fingers, 2))
        self.projection_distance = np.zeros(cfg.num_fingers)
        """Metres each finger's contact point was moved out of the object, largest over the last
        placement or interval (0 when no command reached inside)."""
        self.fingers_placed = False
        self.time = 0.0

    # ------------------------------------------------------------------ setup
    def reset(self, polygon: np.ndarray, pose, velocity=(0.0, 0.0, 0.0)) -> None:
        """Put a new object (polygon in its centroid frame) at ``pose``, at rest by default, with parked fingers."""
        cfg = self.config
        self._build_space()
        body = pymunk.Body(cfg.mass, polar_moment(polygon, cfg.mass))
        body.position = (float(pose[0]), float(pose[1]))
        body.angle = float(pose[2])
        body.velocity = (float(velocity[0]), float(velocity[1]))
        body.angular_velocity = float(velocity[2])
        shapes = []
        for piece in convex_pieces(polygon):
            shape = pymunk.Poly(body, piece)
            shape.friction = 1.0  # so object-ground = mu_e and object-finger = mu_c
            shape.filter = pymunk.ShapeFilter(categories=_OBJECT, mask=_GROUND | _FINGER)
            shapes.append(shape)
        self.space.add(body, *shapes)
        self.object = body
        self._pieces = shapes
        self.polygon = np.asarray(polygon, dtype=np.float64)
        self._circumradius2 = float((self.polygon**2).sum(axis=1).max())
        self._outline = self.polygon.tolist()

    # ---------------------------------------------------------------- fingers
    def anchor(self, command) -> tuple[float, float]:
        """Servo anchor of a command as given (before any projection): the finger centre one radius behind
        the contact point, plus ``lambda / K``."""
        return self._anchor_of(*(float(c) for c in command))

    def _anchor_of(self, x: float, y: float, fx: float, fy: float, floor: float = -math.inf) -> tuple[float, float]:
        """The anchor map, with the finger centre kept at height >= ``floor``."""
        norm = math.hypot(fx, fy)
        back = self.config.finger_radius / (norm if norm > FORCE_SCALE_FLOOR else FORCE_SCALE_FLOOR)
        k_inv = 1.0 / self.config.servo_stiffness
        cy = y - back * fy
        return x - back * fx + k_inv * fx, (cy if cy > floor else floor) + k_inv * fy

    def surface_point(self, x: float, y: float) -> tuple[float, float, float]:
        """``(x, y)`` if it is outside the object now, else the nearest point of the object's surface; and the move."""
        if self.object is None:
            return x, y, 0.0
        c = _cp.cpBodyGetPosition(self.object._body)
        return self._surface_point(x, y, c.x, c.y)

    def _surface_point(self, x: float, y: float, cx: float, cy: float) -> tuple[float, float, float]:
        """:meth:`surface_point` with the object's centre ``(cx, cy)`` already read (the hot loop reads it once)."""
        if self.object is None:
            return x, y, 0.0
        dx, dy = x - cx, y - cy
        if dx * dx + dy * dy >= self._circumradius2:
            return x, y, 0.0
        query = self._query
        for piece in self._pieces:
            if _cp.cpShapePointQuery(piece._shape, (x, y), query) < 0.0:
                break
        else:
            return x, y, 0.0
        if len(self._pieces) == 1:  # convex: chipmunk's query already holds the nearest surface point
            return query.point.x, query.point.y, -query.distance
        # inside a piece of a non-convex object: the nearest point of the whole outline, not of the piece
        angle = _cp.cpBodyGetAngle(self.object._body)
        cos, sin = math.cos(angle), math.sin(angle)
        q, dist = nearest_boundary_point(self._outline, (cos * dx + sin * dy, -sin * dx + cos * dy))
        if dist >= 0.0:  # on a seam between two pieces
            return x, y, 0.0
        return cx + cos * q[0] - sin * q[1], cy + sin * q[0] + cos * q[1], -dist

    def _servo_target(
        self, x: float, y: float, fx: float, fy: float, ox: float, oy: float
    ) -> tuple[float, float, float]:
        """Anchor ``(a_x, a_y)`` of a command once its contact point is kept out of the object (centred at
        ``(ox, oy)``) and the finger centre a radius above the ground; and how far the contact point moved."""
        x, y, moved = self._surface_point(x, y, ox, oy)
        return (*self._anchor_of(x, y, fx, fy, self.config.finger_radius), moved)

    def place_fingers(self, commands: np.ndarray) -> None:
        """Put each finger at its keyframe command (contact point, force) with the servo engaged."""
        k_inv = 1.0 / self.config.servo_stiffness
        limit = self.config.force_limit
        c = self.object.position if self.object is not None else (0.0, 0.0)
        for i, (body, shape, cmd) in enumerate(zip(self.fingers, self._finger_shapes, commands)):
            x, y, fx, fy = (float(v) for v in cmd)
            ax, ay, moved = self._servo_target(x, y, fx, fy, c[0], c[1])
            body.position = (ax - k_inv * fx, ay - k_inv * fy)
            body.velocity = (0.0, 0.0)
            shape.filter = pymunk.ShapeFilter(categories=_FINGER, mask=_OBJECT | _GROUND)
            self.space.reindex_shapes_for_body(body)
            self.projection_distance[i] = moved
            self._forces[i] = (min(max(fx, -limit), limit), min(max(fy, -limit), limit))
        self.fingers_placed = True

    def run_interval(self, start: np.ndarray, end: np.ndarray) -> None:
        """Advance ``dt`` seconds while each finger's command sweeps linearly from ``start`` to ``end``.

        The hot loop of the project (50 substeps per finger and interval): it reads the object's centre
        once per substep and talks to chipmunk directly.
        """
        cfg = self.config
        n, h, rf = cfg.substeps, cfg.substep_dt, cfg.finger_radius
        m, limit = cfg.finger_mass, cfg.force_limit
        decay = math.exp(-cfg.servo_damping * h / m)
        gain, to_force, weight = cfg.servo_stiffness * h / m, m / h, m * cfg.gravity
        floor = rf - _SINK_TOLERANCE  # lowest finger centre after a substep
        space, obj, pieces = self.space._space, self.object._body if self.object is not None else None, self._pieces
        handles = [body._body for body in self.fingers]
        if not self.fingers_placed:  # parked fingers float where they are (chipmunk clears forces every step)
            for _ in range(n):
                for handle in handles:
                    _cp.cpBodySetForce(handle, (0.0, weight))
                _cp.cpSpaceStep(space, h)
                self._keep_object_above_ground(space, obj, pieces)
            self.time += cfg.dt
            return
        # per finger: the command at the start, its change over the interval, and the anchor's own velocity
        # along the sweep (the damper acts on the finger's velocity relative to it)
        sweeps = []
        for a, b, handle in zip(
            np.asarray(start, dtype=np.float64).tolist(), np.asarray(end, dtype=np.float64).tolist(), handles
        ):
            (a0x, a0y), (a1x, a1y) = self.anchor(a), self.anchor(b)
            sweeps.append(
                (
                    *a,
                    b[0] - a[0],
                    b[1] - a[1],
                    b[2] - a[2],
                    b[3] - a[3],
                    (a1x - a0x) / cfg.dt,
                    (a1y - a0y) / cfg.dt,
                    handle,
                )
            )
        moved_max = [0.0] * len(handles)
        forces = self._forces
        ox = oy = 0.0
        # beyond the circumradius nothing is inside the object (no object: nothing is near)
        reach2 = self._circumradius2 if obj is not None else -1.0
        for s in range(1, n + 1):
            w = s / n
            if obj is not None:
                c = _cp.cpBodyGetPosition(obj)
                ox, oy = c.x, c.y
            for i, (x0, y0, fx0, fy0, dx, dy, dfx, dfy, vax, vay, handle) in enumerate(sweeps):
                x, y, fx, fy = x0 + w * dx, y0 + w * dy, fx0 + w * dfx, fy0 + w * dfy
                if (x - ox) ** 2 + (y - oy) ** 2 < reach2:  # near the object: it may have to be projected
                    ax, ay, moved = self._servo_target(x, y, fx, fy, ox, oy)
                    if moved > moved_max[i]:
                        moved_max[i] = moved
                else:
                    ax, ay = self._anchor_of(x, y, fx, fy, rf)
                p, u = _cp.cpBodyGetPosition(handle), _cp.cpBodyGetVelocity(handle)
                ux, uy = u.x, u.y
                fx = to_force * (vax + (ux - vax) * decay + gain * (ax - p.x - ux * h) - ux)
                fy = to_force * (vay + (uy - vay) * decay + gain * (ay - p.y - uy * h) - uy)
                fx = limit if fx > limit else -limit if fx < -limit else fx
                fy = limit if fy > limit else -limit if fy < -limit else fy
                forces[i, 0], forces[i, 1] = fx, fy
                _cp.cpBodySetForce(handle, (fx, fy + weight))
            _cp.cpSpaceStep(space, h)
            self._keep_object_above_ground(space, obj, pieces)
            # then a fast finger driven into the ground or deep into the object is moved back out
            if obj is not None:
                c = _cp.cpBodyGetPosition(obj)
                ox, oy = c.x, c.y
            for handle in handles:
                p = _cp.cpBodyGetPosition(handle)
                px, py = p.x, (p.y if p.y > floor else floor)
                if (px - ox) ** 2 + (py - oy) ** 2 < reach2:
                    sx, sy, depth = self._surface_point(px, py, ox, oy)
                    if depth > _SINK_TOLERANCE:  # out along the normal, to where its rim touches
                        px, py = sx + rf * (sx - px) / depth, sy + rf * (sy - py) / depth
                if px != p.x or py != p.y:
                    _cp.cpBodySetPosition(handle, (px, py))
        self.projection_distance[:] = moved_max
        self.time += cfg.dt

    @staticmethod
    def _keep_object_above_ground(space, obj, pieces) -> None:
        """A vertex moving at v enters the ground by up to v h in the substep it lands: lift the object out of
        what exceeds the tolerance (the solver has already stopped its approach)."""
        if obj is None:
            return
        low = _cp.cpShapeGetBB(pieces[0]._shape).b
        for piece in pieces[1:]:
            low = min(low, _cp.cpShapeGetBB(piece._shape).b)
        if low < -_SINK_TOLERANCE:
            p = _cp.cpBodyGetPosition(obj)
            _cp.cpBodySetPosition(obj, (p.x, p.y - low - _SINK_TOLERANCE))
            _cp.cpSpaceReindexShapesForBody(space, obj)  # the shapes' cached poses follow

    def rollout(self, polygon: np.ndarray, start_pose, commands: np.ndarray) -> np.ndarray:
        """Play keyframe commands ``(T, N, 4)`` from rest at ``start_pose`` as the env does; return poses ``(T, 3)``.

        Keyframe 0 places the fingers (no time passes); keyframe k runs the
        interval from command k - 1 to command k.
        """
        self.reset(polygon, start_pose)
        self.place_fingers(commands[0])
        poses = [self.object_pose]
        for k in range(1, len(commands)):
            self.run_interval(commands[k - 1], commands[k])
            poses.append(self.object_pose)
        return np.stack(poses)

    # ----------------------------------------------------------------- state
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_query"]  # a chipmunk scratch buffer: made anew on unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._query = _ffi.new("cpPointQueryInfo *")

    def _object_body(self) -> pymunk.Body:
        if self.object is None:
            raise RuntimeError("the scene has no object yet: call reset(polygon, pose) first")
        return self.object

    @property
    def object_pose(self) -> np.ndarray:
        """Simulated pose ``(x, y, theta)`` of the object frame (centroid)."""
        b = self._object_body()
        return np.array([b.position.x, b.position.y, b.angle])

    @property
    def object_velocity(self) -> np.ndarray:
        b = self._object_body()
        return np.array([b.velocity.x, b.velocity.y, b.angular_velocity])

    @property
    def finger_positions(self) -> np.ndarray:
        """Finger centres ``(N, 2)``; before :meth:`place_fingers` they are parked at ``(0, -10)``, out of reach."""
        return np.array([[b.position.x, b.position.y] for b in self.fingers])

    @property
    def finger_forces(self) -> np.ndarray:
        """The servo force ``(N, 2)`` each finger pushed with in the last substep (zero when parked)."""
        if not self.fingers_placed:
            return np.zeros((len(self.fingers), 2))
        return self._forces.copy()
