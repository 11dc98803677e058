"""Off-screen pygame rendering: observation frames and the annotated view.

Observation frames (the target video and the current scene) are drawn 4x
super-sampled and smooth-scaled down to ``frame_size`` (50 x 50), so that
sub-pixel motion stays visible to a network. They contain the ground, the
object and (in the current-scene frame) the fingers: never overlays.

The ``rgb_array`` view is larger and annotated: ghost outlines of the target
poses, the simulated object, the fingers and their force arrows.

Off-screen drawing needs no display. ``render_mode="human"`` opens a window:
a real one where a display exists. Before pygame is imported, the SDL video
driver is set to ``dummy`` (an invisible window, so headless machines work)
only when ``SDL_VIDEODRIVER`` is unset and no display exists: on Linux and
other X11 systems, when neither ``DISPLAY`` nor ``WAYLAND_DISPLAY`` is set
(Windows and macOS always have one). Set ``SDL_VIDEODRIVER`` yourself to
choose a driver.
"""

from __future__ import annotations

import os
import sys


def _no_display() -> bool:
    """True where SDL could open no real window: an X11/Wayland system without ``DISPLAY`` or ``WAYLAND_DISPLAY``."""
    if sys.platform in ("win32", "darwin"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if "SDL_VIDEODRIVER" not in os.environ and _no_display():
    os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig  # noqa: E402
from dlm_gym.geometry import transform, world_polygons  # noqa: E402

__all__ = ["Renderer"]

BACKGROUND = (255, 255, 255)
GROUND = (150, 150, 150)
OBJECT = (40, 90, 200)
FINGER = (220, 40, 40)
GHOST = (120, 200, 120)
GHOST_CURRENT = (20, 150, 20)
ARROW = (230, 120, 0)
_SUPERSAMPLE = 4
_ARROW_M_PER_N = 0.005  # force arrows: 1 N draws 5 mm


class Renderer:
    """Draws the scene with pygame onto off-screen surfaces and returns ``(H, W, 3)`` uint8 arrays."""

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._small = pygame.Surface((config.frame_size, config.frame_size))
        side = config.frame_size * _SUPERSAMPLE
        self._large = pygame.Surface((side, side))
        self._view = pygame.Surface((config.render_size, config.render_size))
        self._font: Any = None

    # --------------------------------------------------------------- helpers
    def _to_pixels(self, points: np.ndarray, side: int) -> list[tuple[float, float]]:
        """World metres -> surface pixels (pygame's y axis points down)."""
        (x0, x1), (y0, y1) = self.config.view_x, self.config.view_y
        px = (points[..., 0] - x0) / (x1 - x0) * side
        py = (y1 - points[..., 1]) / (y1 - y0) * side
        return list(zip(px.ravel().tolist(), py.ravel().tolist()))

    def _draw_ground(self, surface: pygame.Surface) -> None:
        side = surface.get_width()
        _, top = self._to_pixels(np.array([0.0, 0.0]), side)[0]
        surface.fill(BACKGROUND)
        pygame.draw.rect(surface, GROUND, pygame.Rect(0, int(round(top)), side, side))

    @staticmethod
    def _array(surface: pygame.Surface) -> np.ndarray:
        return np.ascontiguousarray(pygame.surfarray.pixels3d(surface).transpose(1, 0, 2))

    # ------------------------------------------------------------ observations
    def frame(self, polygon: np.ndarray, pose, fingers: np.ndarray | None = None) -> np.ndarray:
        """One observation frame ``(S, S, 3)`` uint8 of the object at ``pose`` (and finger centres, if given)."""
        big = self._large
        side = big.get_width()
        self._draw_ground(big)
        pygame.draw.polygon(big, OBJECT, self._to_pixels(transform(polygon, pose), side))
        if fingers is not None:
            radius = 1.5 * _SUPERSAMPLE  # a point finger would vanish: draw it 3 px wide
            for p in self._to_pixels(np.asarray(fingers), side):
                pygame.draw.circle(big, FINGER, p, radius)
        pygame.transform.smoothscale(big, self._small.get_size(), self._small)
        return self._array(self._small)

    def video(self, polygon: np.ndarray, trajectory: np.ndarray) -> np.ndarray:
        """The target video ``(T, S, S, 3)`` uint8: the object alone at each keyframe pose."""
        return np.stack([self.frame(polygon, pose) for pose in trajectory])

    # ---------------------------------------------------------------- the view
    def view(
        self,
        polygon: np.ndarray,
        pose,
        *,
        targets: np.ndarray | None = None,
        current: int | None = None,
        fingers: np.ndarray | None = None,
        forces: np.ndarray | None = None,
        caption: str | None = None,
    ) -> np.ndarray:
        """The annotated ``(R, R, 3)`` view: target ghosts, object, fingers and force arrows.

        Args:
            polygon: object-frame vertices.
            pose: the simulated pose.
            targets: ``(T, 3)`` target poses drawn as ghost outlines.
            current: index of the target keyframe to highlight.
            fingers: ``(N, 2)`` finger centres (NaN rows are skipped).
            forces: ``(N, 2)`` forces the fingers apply, drawn as arrows.
            caption: text written in the top-left corner.
        """
        surf = self._view
        side = surf.get_width()
        self._draw_ground(surf)
        if targets is not None:
            for k, ghost in enumerate(world_polygons(polygon, targets)):
                highlight = k == current
                pygame.draw.polygon(
                    surf, GHOST_CURRENT if highlight else GHOST, self._to_pixels(ghost, side), 3 if highlight else 1
                )
        pygame.draw.polygon(surf, OBJECT, self._to_pixels(transform(polygon, pose), side))
        if fingers is not None:
            fingers = np.asarray(fingers)
            for i, p in enumerate(fingers):
                if not np.all(np.isfinite(p)):
                    continue
                centre = self._to_pixels(p, side)[0]
                if forces is not None and np.linalg.norm(forces[i]) > 1e-9:
                    tip = self._to_pixels(p + _ARROW_M_PER_N * np.asarray(forces[i]), side)[0]
                    _arrow(surf, centre, tip)
                pygame.draw.circle(surf, FINGER, centre, 5)
        if caption:
            if self._font is None:
                pygame.font.init()
                self._font = pygame.font.Font(None, 22)
            surf.blit(self._font.render(caption, True, (0, 0, 0)), (8, 8))
        return self._array(surf)


def _arrow(surface: pygame.Surface, start, end, width: int = 3) -> None:
    pygame.draw.line(surface, ARROW, start, end, width)
    d = np.subtract(end, start)
    length = float(np.hypot(*d))
    if length < 1e-6:
        return
    d /= length
    n = np.array([-d[1], d[0]])
    head = min(10.0, 0.4 * length)
    base = np.asarray(end) - head * d
    pygame.draw.polygon(surface, ARROW, [tuple(end), tuple(base + 0.5 * head * n), tuple(base - 0.5 * head * n)])
