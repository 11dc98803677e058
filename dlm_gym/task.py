"""Tasks: an object shape and the target motion it must follow (paper Section 3).

A :class:`Task` is what a video shows: a polygon in the object frame and the
target trajectory ``r(t)`` of T poses ``(x, y, theta)``. The target video is
rendered from it. :func:`sample_task` draws tasks as in Appendix A.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import _is_real, centroid, lowest_height, rotation, validate_polygon
from dlm_gym.shapes import random_polygon, smooth_polygon

__all__ = ["Task", "sample_task", "sample_trajectory", "GROUND_TOLERANCE", "CIRCUMRADIUS_RANGE", "VIEW"]

GROUND_TOLERANCE = 1e-6
"""Metres a target pose may dip below the ground before a Task is rejected."""

CIRCUMRADIUS_RANGE = (0.02, 0.4)
"""Metres allowed for a task polygon's circumradius (centroid to farthest vertex).

At least 2 cm, so that the object covers a few pixels of the 50 x 50 video (a
pixel is 1.6 cm) and the 2 mm fingers can find a facet to push; at most 40 cm,
half the camera's view, so that the object fits in the picture. Generated
shapes have 20 cm (``SceneConfig.object_radius``)."""

VIEW = (DEFAULT_CONFIG.view_x, DEFAULT_CONFIG.view_y)
"""The camera's view, ``((x_min, x_max), (y_min, y_max))`` in metres: every target pose's centre
(the centroid) must lie inside it, or the video would not show the motion."""


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One manipulation task: reproduce ``trajectory`` with the object ``polygon``.

    Args:
        polygon: ``(N_F, 2)`` vertices in metres in the object frame. The
            polygon must be simple (non-convex is fine). It is stored
            counter-clockwise and re-centred on its area centroid, which is
            the object frame's origin and the centre of mass; ``trajectory``
            is shifted to match, so the described motion is unchanged.
        trajectory: ``(T, 3)`` target poses ``(x, y, theta)`` of the object
            frame, in metres and radians. No pose may put a vertex below the
            ground (y < 0).
        seed: the seed the task was sampled with, if any.
        name: a label such as ``"family/3"``.

    Raises:
        dlm_gym.geometry.InvalidPolygonError: for a polygon that is not an
            array of real numbers, degenerate, non-finite, self-intersecting,
            or too small or too large for the scene (circumradius outside
            :data:`CIRCUMRADIUS_RANGE`).
        ValueError: for a trajectory that is not a ``(T, 3)`` array of real
            numbers, has NaN/inf, leaves the camera's view (:data:`VIEW`) or
            penetrates the ground.
    """

    polygon: np.ndarray
    trajectory: np.ndarray
    seed: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        poly = validate_polygon(self.polygon, radius_range=CIRCUMRADIUS_RANGE)
        traj = _real_trajectory(self.trajectory)
        c = centroid(poly)
        if np.linalg.norm(c) > 1e-12:
            # Move the frame origin to the centroid: same motion, new reference point.
            with np.errstate(over="ignore", invalid="ignore"):  # a far-away pose is refused just below
                traj[:, :2] += np.einsum("tij,j->ti", rotation(traj[:, 2]), c)
            poly = poly - c
        _check_in_view(traj)
        low = lowest_height(poly, traj)
        if low.min() < -GROUND_TOLERANCE:
            k = int(np.argmin(low))
            raise ValueError(
                f"trajectory penetrates the ground at keyframe {k} by {-low[k]:.4f} m; "
                "raise y so the lowest vertex is at y >= 0"
            )
        poly.setflags(write=False)
        traj.setflags(write=False)
        object.__setattr__(self, "polygon", poly)
        object.__setattr__(self, "trajectory", traj)

    @property
    def horizon(self) -> int:
        """T, the number of keyframes."""
        return int(self.trajectory.shape[0])

    @property
    def n_facets(self) -> int:
        return int(self.polygon.shape[0])

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Task({self.n_facets} facets, T={self.horizon}{label}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return (
            self.polygon.shape == other.polygon.shape
            and self.trajectory.shape == other.trajectory.shape
            and bool(np.array_equal(self.polygon, other.polygon))
            and bool(np.array_equal(self.trajectory, other.trajectory))
        )

    __hash__ = None  # type: ignore[assignment]


def _real_trajectory(trajectory) -> np.ndarray:
    """A writable float64 ``(T, 3)`` copy; complex, bool and string entries are refused, not cast."""
    try:
        raw = np.asarray(trajectory)
        if raw.dtype.kind == "O" and all(_is_real(v) for v in raw.ravel().tolist()):
            raw = raw.astype(np.float64)  # Python numbers of mixed types
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"trajectory must be a (T, 3) array of real numbers: {exc}") from None
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"trajectory must be a (T, 3) array of real numbers (int or float), got dtype {raw.dtype}")
    traj = np.array(raw, dtype=np.float64)
    if traj.ndim != 2 or traj.shape[1] != 3 or traj.shape[0] < 2:
        raise ValueError(f"trajectory must have shape (T, 3) with T >= 2, got {traj.shape}")
    if not np.all(np.isfinite(traj)):
        raise ValueError("trajectory has NaN or infinite values")
    return traj


def _check_in_view(traj: np.ndarray) -> None:
    """Every target pose's centre must be inside the camera's view (checked on the centroid frame)."""
    (x0, x1), (y0, y1) = VIEW
    x, y = traj[:, 0], traj[:, 1]
    outside = ~((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))  # NaN from an overflow counts as outside
    if outside.any():
        k = int(np.argmax(outside))
        raise ValueError(
            f"trajectory leaves the camera view at keyframe {k}: the object's centre ({x[k]:.3g}, {y[k]:.3g}) m "
            f"must stay within x in [{x0:g}, {x1:g}] m and y in [{y0:g}, {y1:g}] m"
        )


# Appendix A's workspace E for start and goal poses.
_X_RANGE = (-0.15, 0.15)
_LIFT_RANGE = (0.0, 0.2)
_GROUND_PROBABILITY = 0.5
_MAX_TURN = np.pi / 4
_NOISE_SIGMA = 0.01
_SNAP_TO_GROUND = 0.003


def _pose_at_lift(polygon: np.ndarray, x: float, lift: float, theta: float) -> np.ndarray:
    """Pose whose lowest vertex is ``lift`` metres above the ground."""
    low = (polygon @ rotation(theta).T)[:, 1].min()
    return np.array([x, lift - low, theta])


def sample_trajectory(
    rng: np.random.Generator, polygon: np.ndarray, config: SceneConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """A target trajectory ``(T, 3)`` following Appendix A.

    Start and goal are drawn from the workspace E (x in +-15 cm, the lowest
    vertex on the ground with probability 1/2 or up to 20 cm above it, any
    orientation, a turn of at most 45 degrees). The T - 2 interior keyframes
    interpolate them linearly in (x, lift, theta) and get Gaussian noise of
    1 cm on each position. Lifts are clipped at the ground (and snapped to it
    below 3 mm), so no keyframe penetrates the ground.
    """
    T = config.horizon

    def sample_lift() -> float:
        return 0.0 if rng.random() < _GROUND_PROBABILITY else float(rng.uniform(*_LIFT_RANGE))

    theta0 = rng.uniform(-np.pi, np.pi)
    start = np.array([rng.uniform(*_X_RANGE), sample_lift(), theta0])
    goal = np.array([rng.uniform(*_X_RANGE), sample_lift(), theta0 + rng.uniform(-_MAX_TURN, _MAX_TURN)])
    s = np.linspace(0.0, 1.0, T)[:, None]
    xlt = (1 - s) * start + s * goal  # (T, 3): x, lift, theta
    xlt[1:-1, :2] += rng.normal(0.0, _NOISE_SIGMA, size=(T - 2, 2))
    lift = np.maximum(xlt[:, 1], 0.0)
    lift[lift < _SNAP_TO_GROUND] = 0.0
    return np.stack([_pose_at_lift(polygon, x, h, th) for x, h, th in zip(xlt[:, 0], lift, xlt[:, 2])])


def sample_task(
    seed: int,
    *,
    n_facets: int | tuple[int, int] = (4, 6),
    shape: Literal["polygon", "smooth"] = "polygon",
    config: SceneConfig = DEFAULT_CONFIG,
    name: str = "",
) -> Task:
    """Draw a task deterministically from ``seed``.

    Args:
        seed: the task's seed; the same seed always gives the same task.
        n_facets: a facet count, or an inclusive ``(low, high)`` range to draw it from.
        shape: ``"polygon"`` for RPG-style polygons, ``"smooth"`` for smooth blobs.
        config: the scene constants (object radius, horizon).
        name: an optional label stored in the task.
    """
    rng = np.random.default_rng(seed)
    if shape == "polygon":
        lo, hi = (n_facets, n_facets) if isinstance(n_facets, int) else n_facets
        polygon = random_polygon(rng, int(rng.integers(lo, hi + 1)), config.object_radius)
    elif shape == "smooth":
        polygon = smooth_polygon(rng, config.object_radius)
    else:
        raise ValueError(f"shape must be 'polygon' or 'smooth', got {shape!r}")
    return Task(polygon, sample_trajectory(rng, polygon, config), seed=int(seed), name=name)
