import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --- the hand-written simplicity checks against shapely (GEOS) -----------------------------
#
# validate_polygon decides what the task sampler accepts, so replacing it would change the
# shipped tasks. These properties pin down how it relates to shapely instead: it never accepts
# a polygon shapely calls invalid, and it rejects a valid one only inside its own tolerances
# (a facet shorter than min_edge, an area below min_area, non-adjacent facets closer than its
# orientation tolerance allows: 1e-12 m^2 over the facet's length, 1e-12 m for a 1 m facet).

_MIN_EDGE, _MIN_AREA = 1e-6, 1e-8  # validate_polygon's defaults
_TOUCH = 1e-11
"""m^2, ten times validate_polygon's orientation tolerance (1e-12 max(1, |v|^2)): facets whose gap
times the shorter one's length is below it may be judged touching."""


@pytest.fixture(scope="module")
def shapely_lib():
    return pytest.importorskip("shapely")


def _accepted(vertices) -> bool:
    try:
        validate_polygon(vertices)
    except InvalidPolygonError:
        return False
    return True


def _shapely_valid(shapely, v: np.ndarray) -> bool:
    return bool(shapely.Polygon(v).is_valid and shapely.LinearRing(v).is_simple)


def _within_tolerances(shapely, v: np.ndarray) -> bool:
    """True if a tolerance of validate_polygon applies: a short facet, a tiny area or a near-touch."""
    n = len(v)
    lengths = np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)
    if lengths.min() < _MIN_EDGE or abs(signed_area(v)) < _MIN_AREA:
        return True
    tolerance = _TOUCH * max(1.0, float(np.abs(v).max()) ** 2)
    facets = [shapely.LineString([v[i], v[(i + 1) % n]]) for i in range(n)]
    return any(
        facets[i].distance(facets[j]) * min(lengths[i], lengths[j]) < tolerance
        for i in range(n)
        for j in range(i + 2, n)
        if not (i == 0 and j == n - 1)
    )


_grid = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=8).map(
    lambda p: np.array(p, dtype=float)
)
"""Small integer grids: exact collinear points, repeated vertices, touching facets and bow ties are common."""
_coordinate = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)
_scatter = st.lists(st.tuples(_coordinate, _coordinate), min_size=3, max_size=10).map(np.array)


@st.composite
def _star_then_damage(draw):
    """A star-shaped polygon like the sampler's, then perhaps one degenerate edit."""
    n = draw(st.integers(4, 12))
    angles = np.sort(draw(st.lists(st.floats(0.0, 2 * np.pi), min_size=n, max_size=n, unique=True)))
    radii = np.array(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)))
    v = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    k = draw(st.integers(0, n - 1))
    delta = draw(st.sampled_from([0.0, 1e-15, 1e-12, 1e-9, 1e-6, 1e-3])) * draw(st.sampled_from([-1, 1]))
    edit = draw(st.sampled_from(["none", "repeat", "collinear", "spike", "swap", "touch"]))
    if edit == "repeat":  # a repeated vertex, or one delta away
        v = np.insert(v, k, v[k] + delta, axis=0)
    elif edit == "collinear":  # a vertex in the middle of a facet
        v = np.insert(v, k + 1, (v[k] + v[(k + 1) % n]) / 2 + delta, axis=0)
    elif edit == "spike":  # out and back, the two sides delta apart
        side = np.array([-v[k, 1], v[k, 0]]) / np.linalg.norm(v[k])
        v = np.insert(v, k + 1, [1.5 * v[k], v[k] + delta * side], axis=0)
    elif edit == "swap":  # usually a bow tie
        j = draw(st.integers(0, n - 1))
        v[[k, j]] = v[[j, k]]
    elif edit == "touch":  # a vertex delta from a non-adjacent facet, on either side
        a, b = v[(k + 2) % n], v[(k + 3) % n]
        e = b - a
        v[k] = a + draw(st.floats(0.1, 0.9)) * e + delta * np.array([-e[1], e[0]]) / np.linalg.norm(e)
    return v


_polygons = st.one_of(_grid, _scatter, _star_then_damage())
_hypothesis = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_hypothesis
@given(v=_polygons)
def test_validate_polygon_never_accepts_what_shapely_calls_invalid(shapely_lib, v):
    if _accepted(v):
        assert _shapely_valid(shapely_lib, v), v.tolist()


@_hypothesis
@given(v=_polygons)
def test_validate_polygon_rejects_a_valid_polygon_only_within_its_tolerances(shapely_lib, v):
    if _shapely_valid(shapely_lib, v) and not _accepted(v):
        assert _within_tolerances(shapely_lib, v), v.tolist()


@_hypothesis
@given(v=_grid)
def test_on_exact_grids_validate_polygon_and_shapely_agree(shapely_lib, v):
    """Without repeated vertices, which shapely allows and validate_polygon refuses (no facet normal)."""
    if np.all(np.any(np.roll(v, -1, axis=0) != v, axis=1)):
        assert _accepted(v) == _shapely_valid(shapely_lib, v), v.tolist()


@pytest.mark.parametrize(
    "polygon, shapely_valid, accepted",
    [
        ([[0, 0], [1, 0], [1, 1], [0, 1]], True, True),
        ([[0, 0], [1, 0], [2, 0], [1, 1]], True, True),  # collinear vertex: fine for both
        ([[0, 0], [1, 1], [1, 0], [0, 1]], False, False),  # bow tie
        ([[0, 0], [1, 0], [2, 0]], False, False),  # all collinear
        ([[0, 0], [2, 0], [1, 0], [1, 1]], False, False),  # folds back
        ([[0, 0], [2, 0], [2, 2], [1, 0], [0, 2]], False, False),  # a vertex touches a facet
        ([[0, 0], [1, 0], [1, 0], [0, 1]], True, False),  # repeated vertex: shapely ignores it
    ],
)
def test_degenerate_polygons_against_shapely(shapely_lib, polygon, shapely_valid, accepted):
    v = np.array(polygon, dtype=float)
    assert _shapely_valid(shapely_lib, v) is shapely_valid
    assert _accepted(v) is accepted


@pytest.mark.parametrize("kwargs", [{}, {"n_facets": 12}, {"shape": "smooth"}])
def test_sampled_shapes_are_valid_for_shapely_too(shapely_lib, kwargs):
    """The sampler's shapes sit far from every tolerance, so both checks decide them alike."""
    for seed in range(30):
        v = sample_task(seed, **kwargs).polygon
        assert _shapely_valid(shapely_lib, v) and not _within_tolerances(shapely_lib, v)


def test_posed_surface_point_is_nearest_boundary_point_in_the_world_frame(square):
    from dlm_gym.geometry import nearest_boundary_point, posed_surface_point, transform

    pose = np.array([0.3, 0.2, 0.7])
    rng = np.random.default_rng(0)
    for local in rng.uniform(-0.15, 0.15, size=(20, 2)):
        q, signed = posed_surface_point(square, pose, transform(local, pose))
        q_local, signed_local = nearest_boundary_point(square, local)
        assert signed == pytest.approx(signed_local)
        np.testing.assert_allclose(q, transform(np.asarray(q_local), pose), atol=1e-12)
    # the centre is 10 cm inside, at 10 cm from its nearest outline point
    q, signed = posed_surface_point(square, pose, pose[:2])
    assert signed == pytest.approx(-0.1) and np.linalg.norm(q - pose[:2]) == pytest.approx(0.1)
