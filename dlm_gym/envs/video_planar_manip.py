"""VideoPlanarManip-v0: reproduce the object motion shown in a video with two point fingers.

## Description
A polygonal object (1 kg) stands on or above a ground with friction in a
vertical (sagittal) plane under gravity. The observation shows a short video
of the object moving, T = 5 keyframes 0.1 s apart; the agent commands two
non-rolling point fingers so that the simulated object (pymunk) follows the
same motion. This is the task of *A Differentiable Recipe for Learning Visual
Non-Prehensile Planar Manipulation* (Aceituno et al., CoRL 2021).

## Action space
``Box(-1, 1, (N, 4), float32)`` with N = 2 fingers: per finger ``(x, y, f_x, f_y)``,
the contact point and the force on the object at the current keyframe,
normalised (see :mod:`dlm_gym.actions`: x, y span the camera view; forces span
+-40 N). :func:`dlm_gym.action_to_command` and :func:`dlm_gym.command_to_action`
convert. Actions outside [-1, 1] are clipped; a wrong shape or NaN/inf raises
``ValueError``.

What a command cannot do (:mod:`dlm_gym.scene`): a contact point inside the
object is moved to the nearest point of its surface at every physics substep
(placement included), and ``info["projection_distance"]`` says by how much;
the servo pushes each finger with at most 40 N per axis, however far its
target; fingers collide with the solid ground and are never commanded below
it; no object vertex ends a substep more than 1 mm inside the ground.

## Episode and timing
One step per keyframe, T steps. Step 0 places the fingers at their commanded
contact points and forces (no time passes: the object is at the first target
pose, at rest). Each later step k sweeps the fingers' servo targets linearly
from the command of keyframe k - 1 to that of keyframe k while the physics
runs for 0.1 s; the object's pose at the end is the simulated keyframe
``r*(k)``. The episode terminates after step T - 1.

## Observation space
``obs_type="pixels"`` (the default), a ``Dict``:
- ``video``: ``(T, 50, 50, 3)`` uint8, the target video (object only), constant within an episode.
- ``frame``: ``(50, 50, 3)`` uint8, the current scene (object and placed fingers), no overlays.
- ``step``: ``Discrete(T + 1)``, how many steps have been taken.

``obs_type="state"``, a ``Dict`` of the same facts as numbers, for agents that
should not pay for pixels (nothing is rendered unless ``render_mode`` asks):
- ``pose``: ``(3,)`` float64, the simulated object pose ``(x, y, theta)`` now (metres,
  radians; the pose the ``frame`` would show).
- ``targets``: ``(T, 3)`` float64, the target poses of every keyframe (what the video shows),
  constant within an episode.
- ``step``: ``Discrete(T + 1)``, how many steps have been taken (the next keyframe's index).
- ``polygon``: ``(24, 2)`` float64, the object's vertices in its own (centroid) frame, in order,
  padded with zeros after the last vertex to :data:`MAX_POLYGON_VERTICES` = 24 (the smooth
  shapes' count); constant within an episode.
- ``polygon_mask``: ``MultiBinary(24)`` (int8), 1 for the real vertices, 0 for the padding.
- ``finger_positions``: ``(N, 2)`` float64, the finger centres (parked at ``(0, -10)`` before
  step 0), as ``info["finger_positions"]``.

The float boxes are bounded by +-:data:`STATE_BOUND` (1000), loose bounds that no
episode reaches. A task whose polygon has more than 24 vertices cannot be played
in ``"state"`` mode (``reset`` raises ``ValueError``).

## Rewards
``-e_k``, the share of keyframe k in the object-trajectory loss (the paper's
unit, docs/design.md section 5): the squared error in cm^2 of ``(x, y, 0.03 sin theta)``
divided by ``3 T``. The return of an episode is minus its object-trajectory loss.

## Info
The same keys from ``reset`` on, each with a fixed shape and dtype and never
NaN (so recorders such as Minari's store it as is):

- ``keyframe`` (int): the keyframe that ``pose`` belongs to.
- ``pose``, ``target_pose`` (3,) float64: simulated and target ``(x, y, theta)`` there.
- ``pose_error`` (float): that keyframe's share of the loss (minus the reward; 0 at reset).
- ``object_trajectory_loss`` (float): the loss accumulated so far in cm^2; after the last
  step it is the episode's object-trajectory loss.
- ``is_success`` (bool): the episode is over and its loss is at most
  ``config.success_threshold`` (1 cm^2).
- ``finger_positions``, ``finger_forces`` (N, 2) float64: finger centres (parked at
  ``(0, -10)`` before step 0) and the servo force each pushed with last.
- ``projection_distance`` (N,) float64: metres each finger's commanded contact point was
  moved out of the object during the step (0 when it never reached inside).

The ground-truth task is **not** in ``info``: privileged planners (the
oracle) read ``env.unwrapped.task``, and :func:`policies.common.rollout` hands it to
a policy whose ``privileged`` is True as ``info["task"]`` of its ``reset``.
The simulated keyframes so far are ``env.unwrapped.simulated_trajectory``.

## Starting state and tasks
``reset(seed=...)`` draws a task from the generator (Appendix A, 4-6 facets by
default; see the constructor). ``reset(options={"task": task})`` plays a
given :class:`~dlm_gym.Task`, and ``reset(options={"polygon": vertices,
"trajectory": poses})`` the same task as two arrays (``(N_F, 2)`` object-frame
vertices, ``(T, 3)`` target poses): the form to use where reset options are
stored, as Minari's ``DataCollector`` stores them in HDF5, which cannot hold a
``Task`` object. ``reset(options={"split": name, "index": i})`` plays a stored
dataset task. Options whose name starts with ``minari_`` are left to the
recorder that added them (Minari adds ``minari_autoseed``).

## Rendering
``render_mode="rgb_array"``: ``render()`` returns the ``(400, 400, 3)`` uint8 view with
ghost outlines of the target poses, the object, the fingers and their force arrows.
``render_mode="human"``: the same view in a pygame window, natively (no Gymnasium
wrapper), redrawn at every ``reset`` and ``step`` (paced at ``metadata["render_fps"]``,
one frame per keyframe) and by ``render()``, which returns None; ``close()`` closes the
window. A real window needs a display: :mod:`dlm_gym.render` picks SDL's ``dummy``
driver (an invisible window) only when ``SDL_VIDEODRIVER`` is unset and neither
``DISPLAY`` nor ``WAYLAND_DISPLAY`` is (on Linux and other X11 systems).

## Arguments
``gym.make("VideoPlanarManip-v0", render_mode=None, obs_type="pixels", n_facets=(4, 6),
shape="polygon", split=None, config=None)``
(also registered as ``"dlm_gym/VideoPlanarManip-v0"``).
With ``split`` set, ``reset`` without a task draws a random task of that stored split.
The env ends its own episodes (``terminated=True`` after step T - 1), so
``gym.make`` adds no TimeLimit and ``truncated`` is always False.

## Version History
- v0 (dlm-gym 0.2.1): reset options ``polygon`` and ``trajectory`` give a task as
  arrays (storable by Minari); ``minari_*`` options are ignored. Same physics.
- v0 (physics 0.2, dlm-gym 0.2): commanded contact points inside the object are
  projected onto its surface at every substep; the servo force is capped at the
  force limit; the ground is a solid block that fingers collide with; sinking is
  bounded to 1 mm; ``info`` has one fixed structure without the ``Task`` object;
  episodes end terminated, never truncated; random tasks draw seeds from their own
  range (:data:`dlm_gym.datasets.SEED_RANGES`). Results under physics 0.1 are not
  comparable: a script that commanded fingers inside the object scored 5.7 cm^2
  on family there.
- v0 (physics 0.1, dlm-gym 0.1): first release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dlm_gym.actions import action_to_command, validate_action
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import SEED_RANGES
from dlm_gym.metrics import keyframe_errors, object_trajectory_loss
from dlm_gym.render import Renderer
from dlm_gym.scene import Scene
from dlm_gym.task import Task, sample_task

__all__ = ["VideoPlanarManipEnv", "OBS_TYPES", "MAX_POLYGON_VERTICES", "STATE_BOUND"]

OBS_TYPES = ("pixels", "state")
"""The observation types of ``obs_type=`` (see "Observation space")."""
MAX_POLYGON_VERTICES = 24
"""Vertex slots of the ``"state"`` observation's ``polygon``: the smooth shapes' count
(:func:`dlm_gym.shapes.smooth_polygon`)."""
STATE_BOUND = 1000.0
"""The ``"state"`` observation's float boxes span ``[-STATE_BOUND, STATE_BOUND]``: loose finite bounds (metres,
radians) that no episode reaches (80 N on 1 kg for 0.4 s moves it a few metres), so checkers do not warn."""


class VideoPlanarManipEnv(gym.Env):
    """Gymnasium environment for visual non-prehensile planar manipulation (the module docstring has it all).

    Args:
        render_mode: None, ``"rgb_array"`` (``render()`` returns the annotated 400 x 400 view) or
            ``"human"`` (the same view in a pygame window, redrawn at each reset and step).
        obs_type: ``"pixels"`` (default) or ``"state"``; the observation ``Dict`` holds

            - ``"pixels"``: ``video`` ``(T, 50, 50, 3)`` uint8, the target video; ``frame``
              ``(50, 50, 3)`` uint8, the current scene; ``step`` (``Discrete(T + 1)``), the steps taken.
            - ``"state"``: ``pose`` ``(3,)`` float64, the simulated object pose ``(x, y, theta)`` now;
              ``targets`` ``(T, 3)`` float64, the target pose of every keyframe; ``step`` as above
              (the next keyframe's index); ``polygon`` ``(24, 2)`` float64, the object-frame vertices
              zero-padded to :data:`MAX_POLYGON_VERTICES`; ``polygon_mask`` ``MultiBinary(24)`` int8, 1
              for the real vertices; ``finger_positions`` ``(N, 2)`` float64, the finger centres.
              Float boxes span +-:data:`STATE_BOUND`. Nothing is rendered for observations.
        n_facets, shape: the random tasks' generator (:func:`dlm_gym.sample_task`).
        split: draw ``reset``'s tasks from this stored split.
        config: the scene's constants (:class:`~dlm_gym.SceneConfig`).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}  # one frame per keyframe, 0.1 s apart

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        obs_type: str = "pixels",
        n_facets: int | tuple[int, int] = (4, 6),
        shape: str = "polygon",
        split: str | None = None,
        config: SceneConfig | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {list(OBS_TYPES)}, got {obs_type!r}")
        self.config = cfg = config or DEFAULT_CONFIG
        self.render_mode = render_mode
        self.obs_type = obs_type
        self.n_facets = n_facets
        self.shape = shape
        self.split = split
        T, S = cfg.horizon, cfg.frame_size
        if obs_type == "pixels":
            self.observation_space = spaces.Dict(
                {
                    "video": spaces.Box(0, 255, (T, S, S, 3), np.uint8),
                    "frame": spaces.Box(0, 255, (S, S, 3), np.uint8),
                    "step": spaces.Discrete(T + 1),
                }
            )
        else:
            V, bound = MAX_POLYGON_VERTICES, STATE_BOUND
            self.observation_space = spaces.Dict(
                {
                    "pose": spaces.Box(-bound, bound, (3,), np.float64),
                    "targets": spaces.Box(-bound, bound, (T, 3), np.float64),
                    "step": spaces.Discrete(T + 1),
                    "polygon": spaces.Box(-bound, bound, (V, 2), np.float64),
                    "polygon_mask": spaces.MultiBinary(V),
                    "finger_positions": spaces.Box(-bound, bound, (cfg.num_fingers, 2), np.float64),
                }
            )
        self.action_space = spaces.Box(-1.0, 1.0, (cfg.num_fingers, 4), np.float32)
        self._scene = Scene(cfg)
        self._renderer: Renderer | None = None
        self._window: Any = None  # the pygame display surface of render_mode="human"
        self._clock: Any = None
        self.task: Task | None = None
        self._video: np.ndarray | None = None
        self._step = 0
        self._commands: list[np.ndarray] = []
        self._poses: list[np.ndarray] = []
        self._loss = 0.0

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = self._choose_task(options or {})
        if self.obs_type == "state" and len(task.polygon) > MAX_POLYGON_VERTICES:
            raise ValueError(
                f"the task's polygon has {len(task.polygon)} vertices; obs_type='state' holds at most "
                f"{MAX_POLYGON_VERTICES} (use obs_type='pixels')"
            )
        self.task = task
        self._scene.reset(self.task.polygon, self.task.trajectory[0])
        if self.obs_type == "pixels":
            self._video = self._get_renderer().video(self.task.polygon, self.task.trajectory)
        self._step = 0
        self._commands = []
        self._poses = [self._scene.object_pose]
        self._loss = 0.0
        observation, info = self._observation(), self._info(0, 0.0, terminated=False)
        if self.render_mode == "human":
            self._render_window()
        return observation, info

    def step(self, action):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self._step >= self.config.horizon:
            raise RuntimeError("the episode is over (all keyframes played); call reset()")
        command = action_to_command(validate_action(action, self.config), self.config)
        k = self._step
        if k == 0:
            self._scene.place_fingers(command)
        else:
            self._scene.run_interval(self._commands[-1], command)
            self._poses.append(self._scene.object_pose)
        self._commands.append(command)
        self._step += 1
        error = float(keyframe_errors(self._poses[k][None], self.task.trajectory[k][None]).item() / self.config.horizon)
        self._loss += error
        terminated = self._step == self.config.horizon
        if terminated:  # the same number as object_trajectory_loss(), not a running sum's round-off
            self._loss = float(object_trajectory_loss(np.stack(self._poses), self.task.trajectory))
        observation, info = self._observation(), self._info(k, error, terminated)
        if self.render_mode == "human":
            self._render_window()
        return observation, -error, terminated, False, info

    def _playing(self) -> Task:
        """The task being played; only ``reset`` sets it (Gymnasium's order checks run before any step)."""
        if self.task is None:
            raise RuntimeError("no task yet: call env.reset() first")
        return self.task

    def _info(self, k: int, error: float, terminated: bool) -> dict[str, Any]:
        scene = self._scene
        return {
            "keyframe": k,
            "pose": self._poses[k].copy(),
            "target_pose": self._playing().trajectory[k].copy(),
            "pose_error": error,
            "object_trajectory_loss": self._loss,
            "is_success": bool(terminated and self._loss <= self.config.success_threshold),
            "finger_positions": scene.finger_positions,
            "finger_forces": scene.finger_forces,
            "projection_distance": scene.projection_distance.copy(),
        }

    def render(self):
        """The ``rgb_array`` view; in ``human`` mode, redraw the window and return None."""
        if self.render_mode == "human":
            if self.task is not None:
                self._render_window(tick=False)
            return None
        if self.render_mode != "rgb_array" or self.task is None:
            return None
        return self._view()

    def _view(self) -> np.ndarray:
        k = min(self._step, self.config.horizon) - 1
        forces = self._scene.finger_forces if self._scene.fingers_placed else None
        caption = f"keyframe {max(k, 0)}/{self.config.horizon - 1}"
        task = self._playing()
        return self._get_renderer().view(
            task.polygon,
            self._scene.object_pose,
            targets=task.trajectory,
            current=max(k, 0),
            fingers=self._scene.finger_positions if self._scene.fingers_placed else None,
            forces=forces,
            caption=caption,
        )

    def _render_window(self, *, tick: bool = True) -> None:
        """Show the view in the ``human`` window (opened on first use), paced at ``render_fps``."""
        import pygame

        view = self._view()
        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode(view.shape[1::-1])
            pygame.display.set_caption("VideoPlanarManip-v0")
            self._clock = pygame.time.Clock()
        pygame.event.pump()  # keep the window responsive to the window manager
        pygame.surfarray.blit_array(self._window, view.transpose(1, 0, 2))
        pygame.display.flip()
        if tick:
            self._clock.tick(self.metadata["render_fps"])

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = self._clock = None
        self._renderer = None

    # -------------------------------------------------------------- helpers
    @property
    def simulated_trajectory(self) -> np.ndarray:
        """Simulated keyframe poses so far, ``(k + 1, 3)``."""
        return np.stack(self._poses)

    def _get_renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.config)
        return self._renderer

    def _choose_task(self, options: dict[str, Any]) -> Task:
        """The task of the next episode from ``reset``'s options (see "Starting state and tasks").

        Options and their types: ``task``, a :class:`~dlm_gym.Task`, or
        ``polygon`` and ``trajectory``, arrays of one (HDF5-friendly); ``split``,
        a split name or ``.npz`` path (``str`` or ``os.PathLike``); ``index``, an
        integer (Python or NumPy, not bool). Anything else is refused: a float
        index would otherwise be truncated to another task without a word.
        """
        if not isinstance(options, Mapping):
            raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
        # a recorder's own options (Minari adds minari_autoseed) are the recorder's business, not a task's
        options = {k: v for k, v in options.items() if not (isinstance(k, str) and k.startswith("minari_"))}
        unknown = set(options) - {"task", "polygon", "trajectory", "split", "index"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(map(str, unknown))}; use 'task' (or 'polygon' and 'trajectory'), "
                "or 'split' and 'index'"
            )
        if "polygon" in options or "trajectory" in options:
            if "task" in options or not {"polygon", "trajectory"} <= set(options):
                raise ValueError(
                    "options 'polygon' and 'trajectory' go together and replace 'task': pass both, without 'task'"
                )
            options = {**options, "task": Task(options["polygon"], options["trajectory"])}
        if "task" in options:
            task = options["task"]
            if not isinstance(task, Task):
                raise TypeError(f"options['task'] must be a dlm_gym.Task, got {type(task).__name__}")
            if task.horizon != self.config.horizon:
                raise ValueError(f"task has T={task.horizon} keyframes but the env plays T={self.config.horizon}")
            return task
        split = options.get("split", self.split)
        if split is not None:
            from dlm_gym.datasets import load_split

            if not isinstance(split, (str, os.PathLike)):
                raise TypeError(
                    f"options['split'] must be a split name or a .npz path (str), got {type(split).__name__} {split!r}"
                )
            tasks = load_split(os.fspath(split), config=self.config).tasks
            if "index" in options:
                index = options["index"]
                if isinstance(index, np.ndarray) and index.ndim == 0:
                    index = index[()]
                if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
                    raise TypeError(f"options['index'] must be an integer, got {type(index).__name__} {index!r}")
                index = int(index)
                if not 0 <= index < len(tasks):
                    raise IndexError(f"split {split!r} has {len(tasks)} tasks; index {index} is out of range")
            else:
                index = int(self.np_random.integers(len(tasks)))
            return tasks[index]
        if "index" in options:
            raise ValueError("options['index'] needs options['split'] (or an env made with split=...)")
        lo, hi = SEED_RANGES["env"]
        seed = int(self.np_random.integers(lo, hi))
        return sample_task(seed, n_facets=self.n_facets, shape=self.shape, config=self.config)  # type: ignore[arg-type]  # checked in __init__

    def _observation(self) -> dict[str, Any]:
        scene, task = self._scene, self._playing()
        if self.obs_type == "state":
            polygon = np.zeros((MAX_POLYGON_VERTICES, 2))
            n = len(task.polygon)
            polygon[:n] = task.polygon
            mask = np.zeros(MAX_POLYGON_VERTICES, np.int8)
            mask[:n] = 1
            return {
                "pose": np.asarray(scene.object_pose, dtype=np.float64).copy(),
                "targets": np.array(task.trajectory, dtype=np.float64),
                "step": self._step,
                "polygon": polygon,
                "polygon_mask": mask,
                "finger_positions": np.array(scene.finger_positions, dtype=np.float64),
            }
        fingers = scene.finger_positions if scene.fingers_placed else None
        frame = self._get_renderer().frame(task.polygon, scene.object_pose, fingers)
        assert self._video is not None  # rendered by reset with the task
        return {"video": self._video.copy(), "frame": frame, "step": self._step}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_renderer"] = None  # pygame surfaces do not pickle; a new one is made on demand
        state["_window"] = state["_clock"] = None  # a copy opens its own window when it renders
        return state
