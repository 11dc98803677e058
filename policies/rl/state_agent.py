"""State agents: SB3 models trained on ``obs_type="state"`` through wrappers, acting in the zoo's rollout loop.

The rollout loop (:func:`policies.common.rollout.evaluate`) steps a bare env.
An agent trained through :class:`~dlm_gym.wrappers.MarkovState` (velocity and
previous action in the observation) or
:class:`~dlm_gym.wrappers.RelativeContacts` (contact points relative to the
target centroid) needs that wrapper stack to see and act.
:class:`StackPolicy` keeps a *shadow* copy of the stack and replays the
episode in it. :class:`PPOStatePolicy` is the shipped privileged reference
``ppo_state``: PPO on :class:`~dlm_gym.wrappers.MarkovState` with frozen
observation statistics (:class:`ObsNormalizer`), loaded without unpickling.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dlm_gym.actions import action_to_command, command_to_action
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from policies.common.errors import CheckpointError
from policies.common.paths import CHECKPOINT_DIR
from policies.common.registry import register_policy

__all__ = [
    "NORMALIZED_KEYS",
    "STATE_CHECKPOINT",
    "STATE_TIMESTEPS",
    "STATE_REGENERATE_COMMAND",
    "ObsNormalizer",
    "StackPolicy",
    "PPOStatePolicy",
    "ConstantModel",
    "normalizer_path",
    "wrap_state_env",
]

NORMALIZED_KEYS = ("pose", "targets", "polygon", "finger_positions", "velocity")
"""The observation keys that are standardised (those present): their scales differ by orders of magnitude. The
step index, the polygon mask and the previous action (already in [-1, 1]) are left as they are."""
STATE_CHECKPOINT = CHECKPOINT_DIR / "ppo_state.zip"
"""The shipped ``ppo_state`` (with its observation statistics in ``ppo_state_obs_norm.npz``)."""
STATE_TIMESTEPS = 450_560
"""Env steps of the shipped ``ppo_state`` (220 rollouts of 2,048)."""
STATE_REGENERATE_COMMAND = (
    f"python examples/rl_study.py --algo ppo --markov --timesteps {STATE_TIMESTEPS} --seed 0 "
    "--out runs/rl_state_seeds/seed0 --ship policies/checkpoints/ppo_state.zip"
)
"""The command that trains the shipped ``ppo_state`` (hyperparameters: ``policies/rl/hyperparams/ppo_state.yml``)."""


def normalizer_path(checkpoint: str | os.PathLike) -> Path:
    """Where a state agent's observation statistics sit: ``<stem>_obs_norm.npz`` next to its zip."""
    path = Path(checkpoint)
    return path.with_name(path.stem + "_obs_norm.npz")


def wrap_state_env(env: gym.Env, *, markov: bool, relative_contacts: bool) -> gym.Env:
    """The wrapper stack of a state agent: ``RelativeContacts(MarkovState(env))``, each when asked."""
    from dlm_gym.wrappers import MarkovState, RelativeContacts

    if markov:
        env = MarkovState(env)
    if relative_contacts:
        env = RelativeContacts(env)
    return env


class ObsNormalizer:
    """A frozen copy of VecNormalize's observation statistics: ``clip((x - mean) / sqrt(var + eps), +-clip)``."""

    def __init__(self, mean: dict[str, np.ndarray], var: dict[str, np.ndarray], epsilon: float, clip: float) -> None:
        if set(mean) != set(var):
            raise ValueError(f"means for {sorted(mean)} but variances for {sorted(var)}")
        self.mean, self.var, self.epsilon, self.clip = mean, var, float(epsilon), float(clip)

    @classmethod
    def from_vec_normalize(cls, venv: Any) -> ObsNormalizer:
        keys = venv.norm_obs_keys
        return cls(
            {k: venv.obs_rms[k].mean.copy() for k in keys},
            {k: venv.obs_rms[k].var.copy() for k in keys},
            venv.epsilon,
            venv.clip_obs,
        )

    def __call__(self, obs: dict[str, Any]) -> dict[str, Any]:
        out = dict(obs)
        for k, mean in self.mean.items():
            x = (np.asarray(obs[k]) - mean) / np.sqrt(self.var[k] + self.epsilon)
            out[k] = np.clip(x, -self.clip, self.clip).astype(np.float32)
        return out

    def save(self, path: str | os.PathLike) -> None:
        arrays = {f"mean/{k}": v for k, v in self.mean.items()} | {f"var/{k}": v for k, v in self.var.items()}
        np.savez(path, epsilon=self.epsilon, clip=self.clip, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, space: gym.spaces.Dict | None = None) -> ObsNormalizer:
        """Read a file of :meth:`save`; with ``space``, check every key and shape against it.

        Raises:
            CheckpointError: if the file is missing, damaged or does not fit ``space``.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                mean = {k[5:]: np.asarray(data[k], np.float64) for k in data.files if k.startswith("mean/")}
                var = {k[4:]: np.asarray(data[k], np.float64) for k in data.files if k.startswith("var/")}
                norm = cls(mean, var, float(data["epsilon"]), float(data["clip"]))
        except FileNotFoundError:
            raise CheckpointError(f"observation statistics {path} not found") from None
        except Exception as exc:  # noqa: BLE001  (zip, npy, key and value errors: a damaged file)
            raise CheckpointError(
                f"observation statistics {path} are damaged or not an ObsNormalizer file ({type(exc).__name__}: {exc})"
            ) from None
        values = [*norm.mean.values(), *norm.var.values(), norm.epsilon, norm.clip]
        if not all(np.all(np.isfinite(v)) for v in values) or any(np.any(v < 0) for v in norm.var.values()):
            raise CheckpointError(f"observation statistics {path} hold non-finite or negative variances")
        if space is not None:
            for k, m in norm.mean.items():
                box = space.spaces.get(k)
                if box is None or box.shape != m.shape or norm.var[k].shape != m.shape:
                    raise CheckpointError(f"observation statistics {path}: {k!r} does not fit the observation {space}")
        return norm


class _Recorder(gym.Wrapper):
    """Innermost wrapper of :class:`StackPolicy`'s shadow stack: keeps the last raw observation and executed action."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last_obs: dict[str, Any] | None = None
        self.last_action: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self.last_obs, self.last_action = obs, None
        return obs, info

    def step(self, action: Any) -> Any:
        self.last_action = np.array(action, dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_obs = obs
        return obs, reward, terminated, truncated, info


class _SurfaceTwin(gym.ActionWrapper):
    """Moves every contact point commanded inside the object to the nearest point of its outline at the object's
    pose when the command is given (above :class:`_Recorder`, whose last observation holds that pose).

    The env projects interior points at every substep as the object moves; the twin commands the surface
    point once. If a policy's loss gets worse with the twin, its interior commands did something that
    surface commands do not (the exploit check of ``examples/exploit_check.py``, for a state agent).
    """

    def __init__(self, env: _Recorder) -> None:
        super().__init__(env)
        self.recorder = env

    def action(self, action: Any) -> np.ndarray:
        from dlm_gym.geometry import posed_surface_point

        obs = self.recorder.last_obs
        assert obs is not None
        polygon = np.asarray(obs["polygon"])[np.asarray(obs["polygon_mask"]).astype(bool)]
        command = action_to_command(np.clip(np.asarray(action, dtype=np.float64), -1, 1))
        for i in range(len(command)):
            q, signed = posed_surface_point(polygon, obs["pose"], command[i, :2])
            if signed < 0:
                command[i, :2] = q
        twin = command_to_action(command)
        twin[:, 2:] = np.clip(action, -1, 1)[:, 2:]
        return twin


class StackPolicy:
    """An SB3 model trained through state wrappers, acting in the zoo's rollout loop on the bare env.

    The loop steps a bare ``obs_type="state"`` env, whose observations lack what
    :class:`~dlm_gym.wrappers.MarkovState` adds and whose actions are absolute.
    This policy keeps a *shadow* copy of the training stack: at ``reset`` it
    rebuilds the task from the observed polygon and targets and resets its own
    env with it; at each ``act`` it asks the model for an action on the shadow
    stack's (normalised) observation, steps the shadow stack with it and returns
    the absolute action its env executed, which the loop then executes too. The
    physics is deterministic (each reset builds a fresh pymunk space), so both
    envs stay in the same state; every ``act`` checks that they do (pose, finger
    positions, step) and raises ``RuntimeError`` otherwise. The shadow env's
    ``projection_distance`` of every step is kept in :attr:`projections`.
    ``surface_twin=True`` moves contact points commanded inside the object onto
    its outline first, for the exploit check.
    """

    obs_type = "state"
    privileged = False

    def __init__(
        self,
        model: Any,
        *,
        markov: bool,
        relative_contacts: bool,
        normalizer: Callable[[dict], dict] | None = None,
        deterministic: bool = True,
        name: str = "state_agent",
        surface_twin: bool = False,
        config: SceneConfig = DEFAULT_CONFIG,
    ) -> None:
        self.config = config
        self.model = model
        self.normalizer = normalizer
        self.deterministic = deterministic
        self.name = name
        self._recorder = _Recorder(VideoPlanarManipEnv(obs_type="state", config=config))
        inner: gym.Env = _SurfaceTwin(self._recorder) if surface_twin else self._recorder
        self._stack = wrap_state_env(inner, markov=markov, relative_contacts=relative_contacts)
        self._obs: dict[str, Any] | None = None
        self.projections: list[np.ndarray] = []
        """``info["projection_distance"]`` ``(N,)`` of every step played since it was last cleared."""

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        mask = np.asarray(obs["polygon_mask"]).astype(bool)
        options = {"polygon": np.asarray(obs["polygon"])[mask], "trajectory": np.asarray(obs["targets"])}
        self._obs, _ = self._stack.reset(options=options)
        self._check(obs)

    def _check(self, obs: dict[str, Any]) -> None:
        shadow = self._recorder.last_obs
        assert shadow is not None
        for key in ("step", "pose", "targets", "finger_positions"):
            if not np.array_equal(np.asarray(shadow[key]), np.asarray(obs[key])):
                raise RuntimeError(
                    f"{type(self).__name__}: the shadow env's {key!r} differs from the rollout loop's env; "
                    "the two no longer play the same episode"
                )

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self._obs is None:
            raise RuntimeError(f"{type(self).__name__}: call reset(obs, info) before act(obs)")
        self._check(obs)
        x = self.normalizer(self._obs) if self.normalizer is not None else self._obs
        action, _ = self.model.predict(x, deterministic=self.deterministic)
        self._obs, _, _, _, info = self._stack.step(np.asarray(action, dtype=np.float32).reshape(-1, 4))
        self.projections.append(np.asarray(info["projection_distance"], dtype=np.float64).copy())
        assert self._recorder.last_action is not None
        return self._recorder.last_action.copy()


class ConstantModel:
    """A stand-in for an SB3 model that always predicts ``action`` (for reference points and tests)."""

    def __init__(self, action: Any) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return self.action.copy(), None


@register_policy("ppo_state")
class PPOStatePolicy(StackPolicy):
    """The shipped state agent: PPO on :class:`~dlm_gym.wrappers.MarkovState` (a privileged reference, as ``miqp``).

    It reads the task's state (pose, target poses, polygon), never the video.
    ``make_policy("ppo_state")`` loads :data:`STATE_CHECKPOINT` and its
    observation statistics (:func:`normalizer_path`); ``checkpoint=PATH`` loads
    another (for instance ``runs/rl_state_seeds/seed1/model.zip``).

    Raises:
        CheckpointError: if the zip or its statistics are missing, damaged or of another network.
    """

    privileged = True

    def __init__(
        self,
        config: SceneConfig = DEFAULT_CONFIG,
        checkpoint: str | os.PathLike | None = None,
        deterministic: bool = True,
    ) -> None:
        from policies.rl.loading import load_ppo_model, policy_spaces

        self.checkpoint = Path(checkpoint) if checkpoint is not None else STATE_CHECKPOINT
        model = load_ppo_model(self.checkpoint, config, observation="markov_state", regenerate=STATE_REGENERATE_COMMAND)
        space, _ = policy_spaces(config, "markov_state")
        stats = normalizer_path(self.checkpoint)
        if not stats.is_file():
            raise CheckpointError(
                f"{stats} (the observation statistics of {self.checkpoint}) not found; "
                f"regenerate both with `{STATE_REGENERATE_COMMAND}`"
            )
        normalizer = ObsNormalizer.load(stats, space)
        super().__init__(
            model,
            markov=True,
            relative_contacts=False,
            normalizer=normalizer,
            deterministic=deterministic,
            name="ppo_state",
            config=config,
        )
