"""Physical and rendering constants of the sagittal scene, in SI units.

Every part of the project (the pymunk scene, the MIQP oracle, the QP layer, the
renderer) reads the scene's numbers from one :class:`SceneConfig`, so that the
planner's model and the simulator cannot drift apart.

World frame: x to the right, y up, the ground is the line y = 0, gravity is
9.81 m/s^2 along -y. Angles are in radians, counter-clockwise.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["SceneConfig", "DEFAULT_CONFIG"]


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Constants of the scene, the fingers, the timing and the camera.

    The defaults follow the paper (T = 5 keyframes 0.1 s apart, N = 2 point
    fingers, objects rescaled to a 20 cm radius, 50 x 50 video) and docs/design.md
    section 2 (1 kg object, impedance-servoed fingers that feel no gravity).
    """

    # --- timing -----------------------------------------------------------
    horizon: int = 5
    """T, the number of keyframes of a task (and of env steps per episode)."""
    dt: float = 0.1
    """Delta t, seconds between two keyframes."""
    substeps: int = 50
    """Physics substeps between two keyframes (2 ms each by default)."""

    # --- object -----------------------------------------------------------
    mass: float = 1.0
    """Object mass m in kg; the inertia follows from the polygon (uniform density)."""
    object_radius: float = 0.2
    """Generated shapes are rescaled so that their farthest vertex is this far from the centroid."""
    gravity: float = 9.81
    ground_friction: float = 0.5
    """mu_e, Coulomb friction between the object and the ground."""

    # --- fingers ----------------------------------------------------------
    num_fingers: int = 2
    finger_friction: float = 0.6
    """mu_c, Coulomb friction between a finger and the object."""
    finger_radius: float = 0.002
    finger_mass: float = 0.05
    servo_stiffness: float = 400.0
    """K in N/m of the impedance servo: the anchor sits at p_c + lambda_c / K."""
    servo_damping_ratio: float = 1.0
    force_limit: float = 40.0
    """Bound on each component of a commanded finger force, in N."""

    # --- camera / workspace ----------------------------------------------
    view_x: tuple[float, float] = (-0.4, 0.4)
    """World x range seen by the camera; also the range of finger x commands."""
    view_y: tuple[float, float] = (-0.05, 0.75)
    """World y range seen by the camera; also the range of finger y commands."""
    frame_size: int = 50
    """Side, in pixels, of the observation frames."""
    render_size: int = 400
    """Side, in pixels, of the ``rgb_array`` view."""

    # --- loss -------------------------------------------------------------
    loss_rho: float = 0.03
    """rho in metres: the angle enters the object-trajectory loss as rho * sin(theta)."""
    success_threshold: float = 1.0
    """An episode succeeds (``info["is_success"]``) when its object-trajectory loss is at most this, in cm^2."""

    def __post_init__(self) -> None:
        checks = {
            "horizon": self.horizon >= 2,
            "dt": self.dt > 0,
            "substeps": self.substeps >= 1,
            "mass": self.mass > 0,
            "object_radius": self.object_radius > 0,
            "gravity": self.gravity >= 0,
            "ground_friction": self.ground_friction >= 0,
            "num_fingers": self.num_fingers >= 1,
            "finger_friction": self.finger_friction >= 0,
            "finger_radius": self.finger_radius > 0,
            "finger_mass": self.finger_mass > 0,
            "servo_stiffness": self.servo_stiffness > 0,
            "servo_damping_ratio": self.servo_damping_ratio >= 0,
            "force_limit": self.force_limit > 0,
            "view_x": self.view_x[1] > self.view_x[0],
            "view_y": self.view_y[1] > self.view_y[0],
            "frame_size": self.frame_size >= 8,
            "render_size": self.render_size >= 64,
            "loss_rho": self.loss_rho > 0,
            "success_threshold": self.success_threshold >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid SceneConfig field(s): {', '.join(bad)}")

    @property
    def substep_dt(self) -> float:
        """Seconds per physics substep."""
        return self.dt / self.substeps

    @property
    def servo_damping(self) -> float:
        """Damping in N s/m of the finger servo (critical damping at ratio 1)."""
        return 2.0 * self.servo_damping_ratio * math.sqrt(self.servo_stiffness * self.finger_mass)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last keyframe."""
        return (self.horizon - 1) * self.dt


DEFAULT_CONFIG = SceneConfig()
