"""The pymunk sagittal scene: ground, one polygonal object, point fingers.

This is the only physics of the project's environment. The object is a
dynamic rigid body under gravity resting on or above a ground line with
friction; a non-convex polygon becomes several convex pymunk shapes on one
body. Each finger is a small circle of infinite moment (so it grips instead
of rolling) that feels no gravity and is driven by an **impedance servo**
(DESIGN.md section 2): a virtual anchor is placed at ``p_c + lambda_c / K`` and
pulls the finger with a critically damped spring of stiffness ``K``. When the
finger touches the object it therefore pushes with about ``lambda_c`` while
staying at ``p_c``; pure position control could not squeeze.

The servo runs inside pymunk's C solver, with no Python callback per
substep: the anchor is a kinematic body that pymunk itself moves at constant
velocity over an interval, and the isotropic spring-damper is two
``DampedSpring`` s whose far ends sit ``_AXIS_LENGTH`` metres away along x and
y, so each acts along one axis only. The finger's weight is cancelled exactly
by raising the anchor ``m_f g / K`` (a linear spring adds a constant force
for a constant offset), which is how the fingers "feel no gravity".

Finger commands are per keyframe: ``(x, y, f_x, f_y)`` for each finger, the
contact point in metres and the force on the object in newtons (world frame).
:meth:`Scene.place_fingers` puts the fingers at a keyframe command;
:meth:`Scene.run_interval` then sweeps the anchors linearly to the next
keyframe command while the physics advances by ``dt`` (this is why
:mod:`dlm_gym.dynamics` models contact forces as piecewise linear in time).
"""

from __future__ import annotations

import math

import numpy as np
import pymunk
import pymunk.autogeometry

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import polar_moment

__all__ = ["Scene", "convex_pieces", "FORCE_SCALE_FLOOR"]

try:  # pymunk's Space.step only adds callback bookkeeping this scene never uses
    from pymunk._chipmunk import lib as _chipmunk
except ImportError:  # pragma: no cover - other pymunk builds
    _chipmunk = None

# Collision categories: the object meets the ground and the fingers; fingers
# pass through the ground and each other (two bodies of infinite mass or two
# fingers must never push on each other).
_GROUND, _OBJECT, _FINGER = 0b001, 0b010, 0b100
_PARKED = pymunk.ShapeFilter(categories=0, mask=0)
_PARK_POSITION = (0.0, -10.0)  # far below the ground, out of everything's way
FORCE_SCALE_FLOOR = 1.0  # N: below this the finger-radius offset fades out
_AXIS_LENGTH = 100.0  # m: a spring this long is straight along its axis to ~1e-6 for cm offsets


def convex_pieces(polygon: np.ndarray) -> list[list[tuple[float, float]]]:
    """Split a simple CCW polygon into convex pieces for pymunk (itself if convex)."""
    v = [tuple(map(float, p)) for p in polygon]
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
        ground = pymunk.Segment(self.space.static_body, (-50.0, -0.01), (50.0, -0.01), 0.01)
        ground.friction = cfg.ground_friction  # contact friction is the product: ground x 1
        ground.filter = pymunk.ShapeFilter(categories=_GROUND, mask=_OBJECT)
        self.space.add(ground)

        self.fingers: list[pymunk.Body] = []
        self._anchors: list[pymunk.Body] = []
        self._finger_shapes: list[pymunk.Circle] = []
        L = _AXIS_LENGTH
        for _ in range(cfg.num_fingers):
            body = pymunk.Body(cfg.finger_mass, math.inf)
            body.position = _PARK_POSITION
            anchor = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
            anchor.position = self._lift(_PARK_POSITION)
            springs = [
                pymunk.DampedSpring(anchor, body, a, (0.0, 0.0), L, cfg.servo_stiffness, cfg.servo_damping)
                for a in ((-L, 0.0), (0.0, -L))
            ]
            shape = pymunk.Circle(body, cfg.finger_radius)
            shape.friction = cfg.finger_friction
            shape.filter = _PARKED
            self.space.add(body, anchor, shape, *springs)
            self.fingers.append(body)
            self._anchors.append(anchor)
            self._finger_shapes.append(shape)
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
        self.polygon = np.asarray(polygon, dtype=np.float64)

    # ---------------------------------------------------------------- fingers
    def _lift(self, point) -> tuple[float, float]:
        """Raise an anchor by m_f g / K so that the spring carries the finger's weight."""
        cfg = self.config
        return point[0], point[1] + cfg.finger_mass * cfg.gravity / cfg.servo_stiffness

    def anchor(self, command) -> tuple[float, float]:
        """Servo anchor of a command: the finger centre sits one radius behind the contact, the spring adds lambda / K."""
        x, y, fx, fy = (float(c) for c in command)
        cfg = self.config
        back = cfg.finger_radius / max(math.hypot(fx, fy), FORCE_SCALE_FLOOR)
        k_inv = 1.0 / cfg.servo_stiffness
        return self._lift((x - back * fx + k_inv * fx, y - back * fy + k_inv * fy))

    def place_fingers(self, commands: np.ndarray) -> None:
        """Put each finger at its keyframe command (contact point, force) with the servo engaged."""
        cfg = self.config
        for body, anchor, shape, cmd in zip(self.fingers, self._anchors, self._finger_shapes, commands):
            x, y, fx, fy = (float(c) for c in cmd)
            back = cfg.finger_radius / max(math.hypot(fx, fy), FORCE_SCALE_FLOOR)
            body.position = (x - back * fx, y - back * fy)
            body.velocity = (0.0, 0.0)
            anchor.position = self.anchor(cmd)
            anchor.velocity = (0.0, 0.0)
            shape.filter = pymunk.ShapeFilter(categories=_FINGER, mask=_OBJECT)
            self.space.reindex_shapes_for_body(body)
        self.fingers_placed = True

    def run_interval(self, start: np.ndarray, end: np.ndarray) -> None:
        """Advance ``dt`` seconds while each finger's anchor sweeps linearly from command ``start`` to ``end``."""
        cfg = self.config
        for anchor, a, b in zip(self._anchors, start, end):
            a, b = self.anchor(a), self.anchor(b)
            anchor.position = a
            anchor.velocity = ((b[0] - a[0]) / cfg.dt, (b[1] - a[1]) / cfg.dt)  # pymunk moves it
        h = cfg.substep_dt
        if _chipmunk is not None:  # bit-identical to Space.step, ~20 % faster
            raw, handle = _chipmunk.cpSpaceStep, self.space._space
            for _ in range(cfg.substeps):
                raw(handle, h)
        else:
            for _ in range(cfg.substeps):
                self.space.step(h)
        for anchor, b in zip(self._anchors, end):
            anchor.position = self.anchor(b)  # exactly at the keyframe command, free of round-off
            anchor.velocity = (0.0, 0.0)
        self.time += cfg.dt

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
    @property
    def object_pose(self) -> np.ndarray:
        """Simulated pose ``(x, y, theta)`` of the object frame (centroid)."""
        b = self.object
        return np.array([b.position.x, b.position.y, b.angle])

    @property
    def object_velocity(self) -> np.ndarray:
        b = self.object
        return np.array([b.velocity.x, b.velocity.y, b.angular_velocity])

    @property
    def finger_positions(self) -> np.ndarray:
        """Finger centres ``(N, 2)``; parked fingers report NaN."""
        if not self.fingers_placed:
            return np.full((len(self.fingers), 2), np.nan)
        return np.array([[b.position.x, b.position.y] for b in self.fingers])

    @property
    def finger_forces(self) -> np.ndarray:
        """Current servo force ``(N, 2)`` of each finger, i.e. what it pushes with (zero when parked)."""
        if not self.fingers_placed:
            return np.zeros((len(self.fingers), 2))
        K, D = self.config.servo_stiffness, self.config.servo_damping
        weight = self.config.finger_mass * self.config.gravity
        return np.array(
            [
                [
                    K * (a.position.x - b.position.x) + D * (a.velocity.x - b.velocity.x),
                    K * (a.position.y - b.position.y) + D * (a.velocity.y - b.velocity.y) - weight,
                ]
                for a, b in zip(self._anchors, self.fingers)
            ]
        )
