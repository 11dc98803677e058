"""Random object shapes: RPG-style polygons and smooth OmniPush-like blobs.

Shapes are returned in the object frame (centroid at the origin, vertices
counter-clockwise) and rescaled so that the farthest vertex lies
``radius`` from the centroid (Appendix A: "re-scaled to fit within a 20 cm
radius").
"""

from __future__ import annotations

import numpy as np

from dlm_gym.geometry import InvalidPolygonError, centroid, validate_polygon

__all__ = ["random_polygon", "smooth_polygon", "normalize_shape"]


def normalize_shape(vertices: np.ndarray, radius: float) -> np.ndarray:
    """Validate, centre on the area centroid and rescale to the given radius."""
    v = validate_polygon(vertices)
    v = v - centroid(v)
    return v * (radius / np.linalg.norm(v, axis=1).max())


def _interior_angles(v: np.ndarray) -> np.ndarray:
    prev, nxt = np.roll(v, 1, axis=0) - v, np.roll(v, -1, axis=0) - v
    cos = (prev * nxt).sum(1) / (np.linalg.norm(prev, axis=1) * np.linalg.norm(nxt, axis=1))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def random_polygon(
    rng: np.random.Generator,
    n_facets: int,
    radius: float,
    *,
    min_radius_ratio: float = 0.55,
    min_edge_ratio: float = 0.2,
    min_angle: float = np.deg2rad(25.0),
    max_tries: int = 100_000,
) -> np.ndarray:
    """A random simple polygon with ``n_facets`` facets, in the spirit of RPG heuristics.

    Vertices are drawn at random angles around a circle with random radii in
    ``[min_radius_ratio, 1]`` and joined in angular order, which gives a
    star-shaped (hence simple) polygon that may be non-convex. Shapes with a
    facet shorter than ``min_edge_ratio * radius`` or a vertex sharper than
    ``min_angle`` are resampled, so every facet is one a finger can use.

    About 1 in 260 draws of a 12-facet shape passes, so a limit of 1,000 tries
    failed for 2.3 % of seeds; 100,000 never fails in practice (the chance is
    about e^-380) and leaves every seed that passed within 1,000 tries with the
    same polygon, since the draws are the same up to there.
    """
    if n_facets < 3:
        raise ValueError(f"a polygon needs at least 3 facets, got {n_facets}")
    for _ in range(max_tries):
        # Jittered angles keep vertices apart without making the shape regular.
        base = np.sort(rng.uniform(0.0, 2 * np.pi, n_facets))
        gaps = np.diff(np.concatenate([base, base[:1] + 2 * np.pi]))
        if gaps.min() < 0.35 * 2 * np.pi / n_facets:
            continue
        radii = rng.uniform(min_radius_ratio, 1.0, n_facets)
        pts = np.stack([radii * np.cos(base), radii * np.sin(base)], axis=1)
        try:
            v = normalize_shape(pts, radius)
        except InvalidPolygonError:
            continue
        edges = np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)
        if edges.min() < min_edge_ratio * radius or _interior_angles(v).min() < min_angle:
            continue
        return v
    raise RuntimeError(f"could not sample a {n_facets}-facet polygon in {max_tries} tries")


def smooth_polygon(
    rng: np.random.Generator, radius: float, *, n_vertices: int = 24, n_harmonics: int = 3
) -> np.ndarray:
    """A smooth blob (OmniPush-like, Appendix B): a radial Fourier series sampled at ``n_vertices``.

    ``r(phi) = 1 + sum_k a_k cos(k phi + phase_k)`` with small random ``a_k``
    keeps the outline star-shaped and smooth; an optional superellipse
    exponent gives rounded-box shapes too.
    """
    phi = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    amps = rng.uniform(0.0, 0.25, n_harmonics) / np.arange(1, n_harmonics + 1)
    phases = rng.uniform(0.0, 2 * np.pi, n_harmonics)
    r = 1.0 + sum(a * np.cos((k + 1) * phi + p) for k, (a, p) in enumerate(zip(amps, phases)))
    # A superellipse factor: p = 2 is an ellipse, larger p a rounded box.
    p = rng.uniform(2.0, 4.0)
    aspect = rng.uniform(0.6, 1.0)
    c, s = np.cos(phi), np.sin(phi)
    se = (np.abs(c) ** p + np.abs(s / aspect) ** p) ** (-1.0 / p)
    pts = np.stack([r * se * c, r * se * s], axis=1)
    return normalize_shape(pts, radius)
