"""Derendering by geometry: the task a target video shows, estimated from its silhouettes alone.

The renderer (:mod:`dlm_gym.render`) draws the object in one colour over a
white background and a grey ground, super-sampled and smooth-scaled to
50 x 50, so every pixel is a mix of the object's colour and a grey. The
object's share of a pixel (its coverage, :func:`object_coverage`) is then
exact: greys have equal red and blue, the object's blue exceeds its red by a
known amount. From the coverage maps:

- **positions** ``(x, y)``: the coverage-weighted centroid of each frame
  (sub-pixel: millimetres, where a pixel is 1.6 cm);
- **the polygon**: the 0.5 iso-contour of the first frame's coverage
  (scikit-image's ``find_contours``, sub-pixel by interpolation), simplified
  by Douglas-Peucker (``approximate_polygon``), in the first frame's own
  orientation;
- **rotations** relative to the first frame: for each later frame the angle
  whose rendering of that polygon best matches the frame's coverage (a 3
  degree grid), then the pose that lays the frame's sub-pixel outline onto
  the polygon (robust least squares over every contour point). The absolute
  angle of an unseen polygon's own frame cannot be seen in a silhouette, and
  is not needed: a task is the same motion whichever body frame describes it.

Accuracy on validation tasks of our own seeds (100 of 4-6 facets, 60 of 12;
median over tasks of the largest error over keyframes;
``python examples/derender_study.py``): positions 3.1-3.3 mm, rotations 0.5
degrees, outline 1.8 mm.

A keyframe whose estimated lowest vertex is within :data:`GROUND_SNAP` of the
ground is put on it, as the task generator puts resting keyframes.
:func:`estimate_task` returns a :class:`dlm_gym.Task` any planner can use;
the ``vision_miqp`` policy (:mod:`policies.oracle.miqp`) hands it to the MIQP oracle.
"""

from __future__ import annotations

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import InvalidPolygonError, lowest_height, rotation, transform, validate_polygon
from dlm_gym.render import OBJECT, Renderer
from dlm_gym.task import Task
from policies.common.errors import DerenderError

__all__ = [
    "object_coverage",
    "estimate_task",
    "first_frame_outline",
    "task_from_poses",
    "DerenderError",
    "GROUND_SNAP",
]

GROUND_SNAP = 0.008
"""Metres: a keyframe whose estimated lowest vertex is closer to the ground than this rests on it."""
_CONTOUR_TOLERANCE = 0.35  # pixels: Douglas-Peucker tolerance of the polygon outline
_CONTOUR_LEVEL = 0.58
"""pygame's polygon fill draws the silhouette about 1.35 mm (0.08 px) wider than the polygon (measured on
validation tasks): the contour at coverage 0.58 instead of 0.5 sits on the true outline."""
_COARSE_STEP = np.deg2rad(3.0)
_COARSE_SPAN = np.deg2rad(75.0)  # Appendix A turns at most 45 degrees, plus noise


def object_coverage(frames: np.ndarray) -> np.ndarray:
    """The object's share of each pixel, ``(..., H, W)`` in [0, 1], of uint8 frames ``(..., H, W, 3)``.

    Background and ground are greys (red = blue); the object's colour has
    blue - red = 160, and smooth-scaling mixes colours linearly.
    """
    rgb = np.asarray(frames, dtype=np.float64)
    return np.clip((rgb[..., 2] - rgb[..., 0]) / float(OBJECT[2] - OBJECT[0]), 0.0, 1.0)


def _pixel_to_world(rows, cols, config: SceneConfig) -> np.ndarray:
    """Pixel-centre coordinates (row, col; fractional allowed) -> world metres ``(..., 2)``."""
    (x0, x1), (y0, y1) = config.view_x, config.view_y
    s = config.frame_size
    x = x0 + (np.asarray(cols) + 0.5) / s * (x1 - x0)
    y = y1 - (np.asarray(rows) + 0.5) / s * (y1 - y0)
    return np.stack([x, y], axis=-1)


def _centroid(alpha: np.ndarray, config: SceneConfig) -> np.ndarray:
    mass = alpha.sum()
    if mass < 1.0:
        raise DerenderError("no object in the frame: the video must show the object (its blue silhouette)")
    rows, cols = np.indices(alpha.shape)
    return _pixel_to_world((rows * alpha).sum() / mass, (cols * alpha).sum() / mass, config)


def _outline(alpha: np.ndarray, config: SceneConfig) -> np.ndarray:
    """The object's outline at coverage 0.5, as a polygon in world metres, counter-clockwise.

    Douglas-Peucker finds the facets; smoothing has rounded the corners, so
    each facet is then refitted as a line through the middle of its contour
    points and the vertices are where neighbouring lines meet (a vertex
    between two nearly parallel facets keeps its contour position).
    """
    from skimage.measure import approximate_polygon

    contour = _contour(alpha)
    simple = approximate_polygon(np.vstack([contour, contour[:1]]), tolerance=_CONTOUR_TOLERANCE)[:-1]
    for vertices in (_sharpen(contour, simple), simple):  # sharpening can fold a tiny facet: then keep DP's
        try:
            return validate_polygon(_pixel_to_world(vertices[:, 0], vertices[:, 1], config))  # CCW
        except InvalidPolygonError:
            continue
    raise DerenderError("the object's outline is not a simple polygon")


def _contour(alpha: np.ndarray) -> np.ndarray:
    """The object's outline as sub-pixel contour points ``(n, 2)`` (row, col), not repeated at the end."""
    from skimage.measure import find_contours

    contours = find_contours(np.pad(alpha, 1), _CONTOUR_LEVEL)  # the padding closes contours at the edge
    if not contours:
        raise DerenderError("no object outline in a frame")
    return max(contours, key=len)[:-1] - 1.0


def _sharpen(contour: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Corners of a closed contour moved to where the lines fitted to its neighbouring facets meet."""
    n = len(corners)
    if n < 3:
        return corners
    # contour index of each corner (Douglas-Peucker keeps contour points)
    index = [int(np.argmin(((contour - c) ** 2).sum(1))) for c in corners]
    lines = []
    for i in range(n):
        a, b = index[i], index[(i + 1) % n]
        span = (b - a) % len(contour)
        # the middle of the facet, away from the rounded corners
        pts = contour[[(a + j) % len(contour) for j in range(int(0.2 * span), int(0.8 * span) + 1)]]
        if len(pts) < 2:
            pts = np.stack([corners[i], corners[(i + 1) % n]])
        centre = pts.mean(0)
        direction = np.linalg.svd(pts - centre)[2][0]
        lines.append((centre, direction))
    out = corners.astype(np.float64).copy()
    for i in range(n):
        (p, d), (q, e) = lines[i - 1], lines[i]
        cross = d[0] * e[1] - d[1] * e[0]
        if abs(cross) < np.sin(np.deg2rad(12.0)):  # nearly parallel: the meeting point is ill-defined
            continue
        t = ((q[0] - p[0]) * e[1] - (q[1] - p[1]) * e[0]) / cross
        meet = p + t * d
        if np.linalg.norm(meet - corners[i]) < 1.5:  # pixels: a corner only sharpens, it never jumps
            out[i] = meet
    return out


def _register_angle(
    alpha: np.ndarray, polygon: np.ndarray, centre: np.ndarray, guess: float, renderer: Renderer
) -> float:
    """The rotation of ``polygon`` about ``centre`` whose rendering best matches the coverage ``alpha``."""

    def misfit(theta: float) -> float:
        frame = renderer.frame(polygon, (centre[0], centre[1], theta))
        return float(((object_coverage(frame) - alpha) ** 2).sum())

    coarse = guess + np.arange(-_COARSE_SPAN, _COARSE_SPAN + 1e-9, _COARSE_STEP)
    return float(coarse[int(np.argmin([misfit(t) for t in coarse]))])


def _align(points: np.ndarray, polygon: np.ndarray, pose0) -> np.ndarray:
    """The pose ``(x, y, theta)`` that puts world outline ``points`` on ``polygon``'s boundary (least squares,
    from ``pose0``): sub-pixel, since every contour point votes."""
    from scipy.optimize import least_squares

    from dlm_gym.geometry import nearest_boundary_point

    outline = polygon.tolist()

    def residuals(pose):
        local = (points - pose[:2]) @ rotation(pose[2])  # world -> body frame
        return [nearest_boundary_point(outline, p)[1] for p in local]

    return least_squares(
        residuals, np.asarray(pose0, dtype=np.float64), x_scale=[0.01, 0.01, 0.05], loss="soft_l1", f_scale=0.003
    ).x


def estimate_task(video: np.ndarray, config: SceneConfig = DEFAULT_CONFIG, *, name: str = "") -> Task:
    """The :class:`~dlm_gym.Task` a target video ``(T, H, W, 3)`` uint8 shows, from its silhouettes alone.

    Raises:
        DerenderError: if a frame shows no object, or the estimate is not a valid task.
    """
    alpha = object_coverage(_checked_video(video, config))
    centres = np.stack([_centroid(a, config) for a in alpha])
    outline = _outline(alpha[0], config)
    polygon = outline - centres[0]  # body frame: the first frame's orientation, origin at the centroid
    renderer = Renderer(config)
    poses = [np.array([*centres[0], 0.0])]
    for k in range(1, len(video)):
        theta = _register_angle(alpha[k], polygon, centres[k], poses[-1][2], renderer)
        rows, cols = _contour(alpha[k]).T
        points = _pixel_to_world(rows, cols, config)
        poses.append(_align(points, polygon, (*centres[k], theta)))
    trajectory = np.stack(poses)
    return task_from_poses(outline, trajectory[:, :2], trajectory[:, 2], name=name)


def _checked_video(video: np.ndarray, config: SceneConfig) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[1:3] != (config.frame_size, config.frame_size):
        raise DerenderError(
            f"video must be (T, {config.frame_size}, {config.frame_size}, 3) uint8 frames, got {video.shape}"
        )
    return video


def first_frame_outline(video: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The object's polygon as the first frame shows it, ``(n, 2)`` world metres, counter-clockwise.

    Raises:
        DerenderError: if the frame shows no object or its outline is not a simple polygon.
    """
    alpha = object_coverage(_checked_video(video, config)[0])
    if alpha.sum() < 1.0:
        raise DerenderError("no object in the first frame: the video must show the object (its blue silhouette)")
    return _outline(alpha, config)


def task_from_poses(outline: np.ndarray, positions: np.ndarray, angles: np.ndarray, *, name: str = "") -> Task:
    """A task from the first frame's outline (world) and estimated poses: centroids ``(T, 2)`` and rotations
    ``(T,)`` relative to the first frame (the body frame is the first frame's orientation).

    Keyframes whose lowest vertex is within :data:`GROUND_SNAP` of the ground are put on it.

    Raises:
        DerenderError: if the estimate is not a valid task.
    """
    trajectory = np.column_stack([np.asarray(positions, dtype=np.float64), np.asarray(angles, dtype=np.float64)])
    trajectory[:, 2] -= trajectory[0, 2]
    polygon = np.asarray(outline, dtype=np.float64) - trajectory[0, :2]
    try:
        low = lowest_height(polygon, trajectory)
        rest = low < GROUND_SNAP
        trajectory[rest, 1] -= low[rest]  # resting keyframes sit exactly on the ground
        return Task(polygon, trajectory, name=name)
    except (InvalidPolygonError, ValueError) as exc:
        raise DerenderError(f"the estimated task is not valid ({exc})") from None


def pose_errors(estimate: Task, truth: Task) -> dict[str, np.ndarray]:
    """Position (m) and relative-rotation (rad) errors ``(T,)`` of an estimate against the true task.

    Rotations are compared relative to the first keyframe (the only thing a
    silhouette shows); positions are the object frames' origins (both
    centroids).
    """
    pos = np.linalg.norm(estimate.trajectory[:, :2] - truth.trajectory[:, :2], axis=1)
    rel_est = estimate.trajectory[:, 2] - estimate.trajectory[0, 2]
    rel_true = truth.trajectory[:, 2] - truth.trajectory[0, 2]
    rot = np.abs((rel_est - rel_true + np.pi) % (2 * np.pi) - np.pi)
    return {"position_m": pos, "rotation_rad": rot}


def outline_error(estimate: Task, truth: Task, keyframe: int = 0) -> float:
    """Mean distance (m) from the estimated outline's vertices to the true outline, at a keyframe."""
    from dlm_gym.geometry import nearest_boundary_point

    est = transform(estimate.polygon, estimate.trajectory[keyframe])
    pose = truth.trajectory[keyframe]
    local = (est - pose[:2]) @ rotation(pose[2])  # world -> true body frame (R^T v, row-wise)
    return float(np.mean([abs(nearest_boundary_point(truth.polygon, p)[1]) for p in local]))
