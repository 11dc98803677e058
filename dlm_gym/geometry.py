"""Planar polygon geometry: validation, mass properties, rigid transforms.

Polygons are ``(N_F, 2)`` float arrays of vertices in order; facet ``f`` joins
vertex ``f`` to vertex ``f + 1`` (cyclically). Poses are ``(x, y, theta)``.
Everything here is plain NumPy and shared by the scene, the renderer, the
contact mechanics and the task generators.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "InvalidPolygonError",
    "validate_polygon",
    "MAX_COORDINATE",
    "circumradius",
    "signed_area",
    "centroid",
    "polar_moment",
    "rotation",
    "transform",
    "world_polygons",
    "lowest_height",
    "nearest_boundary_point",
    "posed_surface_point",
]


class InvalidPolygonError(ValueError):
    """A polygon is degenerate, self-intersecting or not finite."""


def signed_area(vertices: np.ndarray) -> float:
    """Shoelace area: positive for counter-clockwise vertex order."""
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def centroid(vertices: np.ndarray) -> np.ndarray:
    """Area centroid (centre of mass at uniform density) of a simple polygon."""
    x, y = vertices[:, 0], vertices[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = 0.5 * cross.sum()
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6.0 * area)


def polar_moment(vertices: np.ndarray, mass: float) -> float:
    """Moment of inertia about the centroid of a uniform polygon of the given mass."""
    v = vertices - centroid(vertices)
    x, y = v[:, 0], v[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = 0.5 * cross.sum()
    second = (cross * (x * x + x * xn + xn * xn + y * y + y * yn + yn * yn)).sum() / 12.0
    return float(mass * second / area)


def _segments_cross(p1, p2, q1, q2, eps: float) -> bool:
    """True if the closed segments p1p2 and q1q2 intersect (touching counts)."""

    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > eps and d2 < -eps) or (d1 < -eps and d2 > eps)) and (
        (d3 > eps and d4 < -eps) or (d3 < -eps and d4 > eps)
    ):
        return True

    def on_segment(a, b, c, d):  # c is collinear with ab and within its box
        return (
            abs(d) <= eps
            and min(a[0], b[0]) - eps <= c[0] <= max(a[0], b[0]) + eps
            and (min(a[1], b[1]) - eps <= c[1] <= max(a[1], b[1]) + eps)
        )

    return (
        on_segment(q1, q2, p1, d1)
        or on_segment(q1, q2, p2, d2)
        or on_segment(p1, p2, q1, d3)
        or on_segment(p1, p2, q2, d4)
    )


MAX_COORDINATE = 1e150
"""Metres beyond which a coordinate is refused outright: the simplicity checks multiply coordinate
differences, and past this their products would overflow float64 (and Python floats raise)."""

_REAL_KINDS = "iuf"  # signed/unsigned integers and floats; never bool, complex, strings or dates


def _real_array(vertices) -> np.ndarray:
    """``vertices`` as float64, refusing what NumPy would convert silently (complex, bool, numeric strings)."""
    try:
        raw = np.asarray(vertices)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise InvalidPolygonError(f"polygon must be an (N, 2) array of numbers: {exc}") from None
    if raw.dtype.kind == "O" and all(_is_real(c) for c in raw.ravel().tolist()):
        try:
            raw = raw.astype(np.float64)  # Python numbers of mixed types (int, float, Fraction, ...)
        except OverflowError:  # an int beyond float64
            raise InvalidPolygonError("polygon coordinates are too large for float64: rescale it") from None
    if raw.dtype.kind not in _REAL_KINDS:
        raise InvalidPolygonError(
            f"polygon must be an (N, 2) array of real numbers (int or float), got dtype {raw.dtype}"
        )
    return raw.astype(np.float64)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_extent(v: np.ndarray, radius_range: tuple[float, float] | None) -> None:
    """Refuse coordinates too large to check, and, before any costly test, polygons surely too big for ``radius_range``.

    The circumradius about any point of the polygon is at least half its
    largest bounding-box side, so that bound needs neither a centroid nor a
    simple polygon yet.
    """
    scale = float(np.abs(v).max())
    allowed = (
        ""
        if radius_range is None
        else (f"; the scene allows a circumradius in [{radius_range[0]:g}, {radius_range[1]:g}] m")
    )
    if scale > MAX_COORDINATE:
        raise InvalidPolygonError(
            f"polygon coordinates reach {scale:.3g} m (at most {MAX_COORDINATE:g}){allowed}: rescale it"
        )
    if radius_range is not None:
        half_side = float(np.max(v.max(axis=0) - v.min(axis=0))) / 2
        if half_side > radius_range[1]:
            raise InvalidPolygonError(
                f"polygon is {2 * half_side:.3g} m across, so its circumradius is at least {half_side:.3g} m{allowed}: "
                "rescale it"
            )


def circumradius(vertices: np.ndarray) -> float:
    """Distance from the area centroid to the farthest vertex (what generated shapes are rescaled to)."""
    return float(np.linalg.norm(vertices - centroid(vertices), axis=1).max())


def validate_polygon(
    vertices,
    *,
    min_area: float = 1e-8,
    min_edge: float = 1e-6,
    radius_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Check a polygon and return it as a counter-clockwise ``(N_F, 2)`` float64 array.

    Args:
        radius_range: if given, the allowed ``(min, max)`` circumradius in metres
            (:func:`circumradius`); :class:`dlm_gym.Task` passes the scene's.

    Raises:
        InvalidPolygonError: if it is not an array of real numbers, has fewer
            than 3 vertices, non-finite coordinates or coordinates beyond
            :data:`MAX_COORDINATE`, a facet shorter than ``min_edge``, an area
            below ``min_area``, two facets that cross or touch (not simple), or
            a circumradius outside ``radius_range``. Never another error, for
            any input.
    """
    v = _real_array(vertices)
    if v.ndim != 2 or v.shape[1] != 2:
        raise InvalidPolygonError(f"polygon must have shape (N, 2), got {v.shape}")
    if v.shape[0] < 3:
        raise InvalidPolygonError(f"polygon needs at least 3 vertices, got {v.shape[0]}")
    if not np.all(np.isfinite(v)):
        raise InvalidPolygonError("polygon has NaN or infinite coordinates")
    _check_extent(v, radius_range)
    edges = np.roll(v, -1, axis=0) - v
    lengths = np.linalg.norm(edges, axis=1)
    if np.any(lengths < min_edge):
        f = int(np.argmin(lengths))
        raise InvalidPolygonError(
            f"polygon facet {f} has length {lengths[f]:.3g} m (< {min_edge:g}): remove repeated vertices"
        )
    n = v.shape[0]
    eps = 1e-12 * max(1.0, float(np.abs(v).max()) ** 2)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring facets share a vertex by construction
            if _segments_cross(v[i], v[(i + 1) % n], v[j], v[(j + 1) % n], eps):
                raise InvalidPolygonError(f"polygon is self-intersecting: facets {i} and {j} cross or touch")
    # Neighbouring facets that fold back onto each other are also not simple.
    for i in range(n):
        a, b = edges[i - 1], edges[i]
        cross = a[0] * b[1] - a[1] * b[0]
        if abs(cross) <= 1e-12 * lengths[i - 1] * lengths[i] and np.dot(a, b) < 0:
            raise InvalidPolygonError(f"polygon folds back on itself at vertex {i}")
    area = signed_area(v)
    if abs(area) < min_area:
        raise InvalidPolygonError(f"polygon area {abs(area):.3g} m^2 is (near) zero")
    if area < 0:
        v = v[::-1].copy()
    if radius_range is not None:
        r, (lo, hi) = circumradius(v), radius_range
        if not lo <= r <= hi:
            raise InvalidPolygonError(
                f"polygon circumradius {r:.3g} m is outside the range the scene allows, [{lo:g}, {hi:g}] m: rescale it"
            )
    return v


def rotation(theta) -> np.ndarray:
    """2 x 2 rotation matrix (or a stack of them for an array of angles)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def transform(points: np.ndarray, pose) -> np.ndarray:
    """Map object-frame points ``(..., 2)`` to the world frame at ``pose = (x, y, theta)``."""
    pose = np.asarray(pose, dtype=np.float64)
    return points @ rotation(pose[2]).T + pose[:2]


def world_polygons(vertices: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """World-frame vertices ``(T, N_F, 2)`` of a polygon at each of ``poses (T, 3)``."""
    poses = np.asarray(poses, dtype=np.float64)
    rot = rotation(poses[:, 2])  # (T, 2, 2)
    return np.einsum("tij,nj->tni", rot, vertices) + poses[:, None, :2]


def lowest_height(vertices: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Height above the ground ``(T,)`` of the lowest vertex at each pose."""
    return world_polygons(vertices, np.atleast_2d(poses))[..., 1].min(axis=-1)


def nearest_boundary_point(vertices, point) -> tuple[tuple[float, float], float]:
    """The boundary point of a simple polygon nearest to ``point`` and the point's signed distance.

    The distance is negative inside (crossing number, exact for non-convex
    polygons). Both are in the polygon's own frame. Plain Python on purpose:
    the scene calls it inside its substep loop, where NumPy's per-call
    overhead on a dozen vertices would dominate; pass ``vertices`` as a list
    of ``(x, y)`` pairs there (an array works too).
    """
    if isinstance(vertices, np.ndarray):
        vertices = vertices.tolist()
    px, py = float(point[0]), float(point[1])
    best, bx, by, crossings = math.inf, px, py, 0
    n = len(vertices)
    for f in range(n):
        x0, y0 = vertices[f]
        x1, y1 = vertices[f + 1 - n]
        ex, ey = x1 - x0, y1 - y0
        t = ((px - x0) * ex + (py - y0) * ey) / (ex * ex + ey * ey)
        t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
        qx, qy = x0 + t * ex, y0 + t * ey
        d2 = (px - qx) ** 2 + (py - qy) ** 2
        if d2 < best:
            best, bx, by = d2, qx, qy
        if (y0 > py) != (y1 > py) and px < x0 + (py - y0) * ex / ey:
            crossings += 1
    dist = math.sqrt(best)
    return (bx, by), (-dist if crossings % 2 else dist)


def posed_surface_point(vertices, pose, point) -> tuple[np.ndarray, float]:
    """:func:`nearest_boundary_point` in the world frame: for a polygon (``vertices`` in its own frame) at
    ``pose = (x, y, theta)`` and a world point, the nearest point of the posed outline (world frame) and the
    point's signed distance to it (negative inside)."""
    pose = np.asarray(pose, dtype=np.float64)
    rot = rotation(pose[2])
    q, signed = nearest_boundary_point(vertices, (np.asarray(point, dtype=np.float64) - pose[:2]) @ rot)
    return np.asarray(q) @ rot.T + pose[:2], signed
