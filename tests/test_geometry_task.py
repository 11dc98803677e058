import numpy as np
import pytest

from dlm_gym import InvalidPolygonError, Task, sample_task
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.geometry import centroid, lowest_height, polar_moment, signed_area, transform, validate_polygon


@pytest.mark.parametrize(
    "polygon, message",
    [
        ([[0, 0], [1, 0]], "at least 3 vertices"),
        ([[0, 0], [1, 0], [np.nan, 1]], "NaN"),
        ([[0, 0], [1, 0], [np.inf, 1]], "NaN or infinite"),
        ([[0, 0], [1, 0], [0.5, 1e-10]], "area"),
        ([[0, 0], [1, 0], [2, 0]], "self-intersecting|folds back"),
        ([[0, 0], [1, 1], [1, 0], [0, 1]], "self-intersecting"),  # a bow tie
        ([[0, 0], [1, 0], [1, 0], [0, 1]], "facet 1 has length"),
        ([[0, 0], [2, 0], [2, 2], [1, -1], [0, 2]], "self-intersecting"),
        ("not a polygon", r"\(N, 2\) array"),
    ],
)
def test_bad_polygons_are_rejected_with_a_clear_error(polygon, message):
    with pytest.raises(InvalidPolygonError, match=message):
        validate_polygon(polygon)


def test_clockwise_polygon_is_reoriented(square):
    v = validate_polygon(square[::-1])
    assert signed_area(v) > 0
    assert signed_area(validate_polygon(square)) == pytest.approx(0.04)


def test_mass_properties_of_a_square(square):
    assert np.allclose(centroid(square + 0.3), [0.3, 0.3])
    # I = m (a^2 + b^2) / 12 for a 0.2 x 0.2 square of 1 kg
    assert polar_moment(square, 1.0) == pytest.approx(0.08 / 12)


def test_task_recentres_polygon_without_changing_the_motion(square):
    off = square + [0.05, 0.02]
    traj = np.array([[0.0, 0.2, 0.0], [0.01, 0.21, 0.3], [0.02, 0.22, 0.6]])
    task = Task(off, traj)
    assert np.allclose(centroid(task.polygon), 0.0, atol=1e-12)
    for k in range(3):  # the world-frame vertices are the same
        assert np.allclose(transform(task.polygon, task.trajectory[k]), transform(off, traj[k]))


def test_task_rejects_bad_trajectories(square):
    with pytest.raises(ValueError, match=r"shape \(T, 3\)"):
        Task(square, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        Task(square, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="penetrates the ground at keyframe 2"):
        Task(square, np.array([[0, 0.1, 0], [0, 0.1, 0], [0, 0.05, 0]]))


def test_task_is_read_only(square):
    task = Task(square, np.array([[0, 0.1, 0], [0, 0.1, 0]]))
    with pytest.raises(ValueError):
        task.trajectory[0, 0] = 1.0


@pytest.mark.parametrize("kwargs", [{}, {"n_facets": 12}, {"shape": "smooth"}])
def test_sample_task_is_deterministic_and_valid(kwargs):
    a, b = sample_task(7, **kwargs), sample_task(7, **kwargs)
    assert a == b and a.seed == 7
    assert a != sample_task(8, **kwargs)
    assert a.horizon == DEFAULT_CONFIG.horizon
    assert lowest_height(a.polygon, a.trajectory).min() >= -1e-9
    radius = np.linalg.norm(a.polygon, axis=1).max()
    # rescaled about the centroid of the raw outline, so within a few % of 20 cm
    assert 0.15 < radius <= 0.2 * 1.3


def test_sampled_facet_counts():
    counts = {sample_task(s).n_facets for s in range(40)}
    assert counts <= {4, 5, 6} and len(counts) == 3
    assert sample_task(3, n_facets=12).n_facets == 12
    with pytest.raises(ValueError, match="shape must be"):
        sample_task(0, shape="star")


def test_sampled_trajectories_follow_appendix_a():
    """Start and goal from E, interior keyframes near the line between them, lifts never negative."""
    for s in range(30):
        task = sample_task(s)
        low = lowest_height(task.polygon, task.trajectory)
        assert low.min() >= -1e-9
        x = task.trajectory[:, 0]
        line = np.linspace(x[0], x[-1], len(x))
        assert np.abs(x - line).max() < 0.06  # 1 cm noise: 6 sigma
        turn = abs(task.trajectory[-1, 2] - task.trajectory[0, 2])
        assert turn <= np.pi / 4 + 1e-9
