"""PPO (stable-baselines3) on ``VideoPlanarManip-v0``: the zoo's closed-loop RL baseline, registered as ``"ppo"``.

The agent sees the environment through the wrapper that SB3 users are told to
use, :class:`dlm_gym.wrappers.StackVideoChannels`: ``image`` (the 5 target
video frames and the current frame stacked on the channel axis,
``(50, 50, 18)`` uint8) and ``step`` (the keyframe index). It acts step by step
(closed loop), one ``(2, 4)`` normalised action per keyframe.

Network: SB3's ``MultiInputPolicy`` with :class:`VideoCNN` as the feature
extractor (a small stride-2 CNN with coordinate channels, shared by actor and
critic) instead of SB3's default NatureCNN; see :class:`VideoCNN` for why.

Train::

    python examples/train.py --policy ppo                      # the shipped checkpoint
    python -m rl_zoo3.train --algo ppo --env VideoPlanarManip-v0 --gym-packages dlm_gym \\
        -conf policies/rl/hyperparams/ppo.yml -f logs/          # the same hyperparameters via the zoo

Use::

    policy = policies.make_policy("ppo")                       # loads policies/checkpoints/ppo.zip
    policies.evaluate(policy, tasks)

Shipped result (an honest negative one): after 196,608 env steps (39,320
episodes, 17.3 min on 2 shared CPU cores, 1 torch thread) the deterministic
policy lifts both fingers to the top of the view, above every object, and so
plays exactly like ``noop`` (same loss on every task; see
``policies/checkpoints/ppo_log.csv``). It learned to stop hurting (random
fingers are about 8x worse than doing nothing) but not to help. The paper's
PPO baseline is likewise far behind the model-based methods.

Checkpoints are SB3 ``.zip`` files. They are loaded without unpickling
anything: the tensors go through ``torch.load(weights_only=True)`` (SB3's
default) and every cloudpickled entry of the zip's metadata (spaces,
schedules, policy class and kwargs) is replaced by the known objects of this
module. The network sizes are inferred from the weights, so a PPO that a user
trained on the same wrapper with SB3's ``MultiInputPolicy`` and SB3's default
feature extractor (NatureCNN on the image) or :class:`VideoCNN` loads too
(:func:`load_ppo_model`); any other network raises :class:`CheckpointError`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize, VecTransposeImage
from torch import nn
from tqdm.auto import tqdm

import dlm_gym  # noqa: F401  (registers VideoPlanarManip-v0)
from dlm_gym.atomic import atomic_write
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.task import sample_task
from dlm_gym.wrappers import StackVideoChannels
from policies.base import Policy
from policies.models import CheckpointError  # the zoo's one checkpoint error, re-exported here
from policies.registry import register_policy

__all__ = [
    "ENV_ID",
    "DEFAULT_CHECKPOINT",
    "HYPERPARAMS_FILE",
    "PPO_HYPERPARAMS",
    "REGENERATE_COMMAND",
    "CheckpointError",
    "VideoCNN",
    "PPOPolicy",
    "train_ppo",
    "load_ppo_model",
    "make_train_env",
    "policy_kwargs",
]

ENV_ID = "VideoPlanarManip-v0"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = _PACKAGE_DIR / "checkpoints" / "ppo.zip"
"""The shipped checkpoint, loaded by ``make_policy("ppo")``."""
HYPERPARAMS_FILE = Path(__file__).resolve().parent / "hyperparams" / "ppo.yml"
"""The rl-baselines3-zoo hyperparameter file; it must agree with :data:`PPO_HYPERPARAMS` (a test checks)."""

DEFAULT_TIMESTEPS = 196_608
DEFAULT_SEED = 0
REGENERATE_COMMAND = f"python examples/train.py --policy ppo --timesteps {DEFAULT_TIMESTEPS} --seed {DEFAULT_SEED}"
"""The command that trains the shipped checkpoint (and writes ``policies/checkpoints/ppo_log.csv``)."""

#: Held-out validation tasks for the learning curve: generated (4-6 facets, the
#: training distribution) with seeds far from the evaluation seeds of the zoo.
VALIDATION_SEED0 = 800_000

# The network kwargs, exactly as the zoo file writes them (a Python expression
# that rl_zoo3 evaluates with ``importlib`` in scope).
_POLICY_KWARGS_EXPR = (
    "dict(features_extractor_class=importlib.import_module('policies.rl.ppo').VideoCNN, "
    "features_extractor_kwargs=dict(features_dim=256), "
    "net_arch=dict(pi=[128], vf=[128]), log_std_init=-1.0)"
)

PPO_HYPERPARAMS: dict[str, Any] = {
    "n_envs": 8,
    "n_timesteps": float(DEFAULT_TIMESTEPS),
    "policy": "MultiInputPolicy",
    "env_wrapper": "dlm_gym.wrappers.StackVideoChannels",
    "normalize": "dict(norm_obs=False, norm_reward=True)",
    "n_steps": 128,
    "batch_size": 256,
    "n_epochs": 5,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "learning_rate": "lin_3e-4",
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "policy_kwargs": _POLICY_KWARGS_EXPR,
}
"""The hyperparameters of the shipped checkpoint, in rl-baselines3-zoo's vocabulary.

``policies/rl/hyperparams/ppo.yml`` holds the same values under the key
``VideoPlanarManip-v0``. Reasons:

- ``n_envs=8, n_steps=128``: 1024 transitions (about 205 five-step episodes)
  per update, so each update sees many tasks; the env is cheap, the CNN is not.
- ``batch_size=256, n_epochs=5``: fewer passes than SB3's default 10, because
  fresh samples cost less than gradient steps here (the network dominates).
- ``gamma=1.0``: episodes last 5 steps and the return is exactly minus the
  object-trajectory loss; discounting would only bias the objective.
- ``normalize`` (reward only): per-step rewards range from 0 to about -1000 cm^2
  (random fingers can fling the object); VecNormalize scales them to unit
  variance and clips at 10 std, which keeps the value loss sane. Observations
  are images and are only divided by 255 (SB3's default).
- ``learning_rate=lin_3e-4``: Adam at 3e-4, decayed linearly to 0 to settle the
  final policy.
- ``log_std_init=-1.0``: initial action std 0.37 instead of 1. Uniformly random
  fingers are 8x worse than doing nothing (they poke into the object), so a
  narrower start wastes fewer samples.
- ``net_arch`` 128 per head on top of the 256 CNN features plus the one-hot step.
"""




# ---------------------------------------------------------------- network
class VideoCNN(BaseFeaturesExtractor):
    """Features of ``StackVideoChannels`` observations: a small CNN on ``image`` plus the one-hot ``step``.

    Why not SB3's NatureCNN: it was built for 84 x 84 Atari frames. On a 50 x 50
    image its 8 x 8 stride-4 first layer leaves an 11 x 11 map and its last
    layer a 2 x 2 one, and one pixel here is already 1.6 cm; the task is about
    where the object is and how far it moves between keyframes (a few pixels).
    This extractor keeps more resolution at a similar cost:

    - two coordinate channels (x, y in [-1, 1]) are appended to the 18 image
      channels, so that positions are easy to read out (CoordConv);
    - conv 5x5 stride 2 (16) -> 25 x 25, conv 3x3 stride 2 (32) -> 13 x 13,
      conv 3x3 stride 2 (64) -> 7 x 7, conv 3x3 stride 2 (64) -> 4 x 4, each
      with ReLU (about 7 M multiply-adds per observation; with 1 torch thread
      PPO trains at about 190 env steps/s here, against 230 for NatureCNN and
      140 for channels 32-64-64);
    - flatten (1024), linear to ``features_dim``, ReLU (the whole policy has
      about 0.4 M parameters, so the checkpoint stays small);
    - the one-hot keyframe index (SB3 one-hot encodes ``Discrete``) is appended,
      so the output has ``features_dim + T + 1`` features.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        features_dim: int = 256,
        channels: tuple[int, ...] = (16, 32, 64, 64),
    ) -> None:
        image_space = observation_space["image"]
        step_space = observation_space["step"]
        if not isinstance(step_space, spaces.Discrete):
            raise TypeError(f"VideoCNN expects a Discrete 'step' space, got {step_space}")
        n_step = int(step_space.n)
        super().__init__(observation_space, features_dim + n_step)
        c_in, h, w = image_space.shape  # channel-first: SB3 transposes image observations
        if min(h, w) < 8 or c_in > h:
            raise ValueError(
                f"VideoCNN expects a channel-first image, got shape {image_space.shape}; "
                "wrap the env in a VecTransposeImage (SB3 does it for you)"
            )
        ys, xs = th.meshgrid(th.linspace(-1.0, 1.0, h), th.linspace(-1.0, 1.0, w), indexing="ij")
        self.register_buffer("coords", th.stack([xs, ys])[None], persistent=False)
        layers: list[nn.Module] = []
        previous = c_in + 2
        for i, width in enumerate(channels):
            kernel = 5 if i == 0 else 3
            layers += [nn.Conv2d(previous, width, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
            previous = width
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        with th.no_grad():
            n_flat = self.cnn(th.zeros(1, c_in + 2, h, w)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        image = observations["image"]
        coords = self.coords.expand(image.shape[0], -1, -1, -1)
        features = self.linear(self.cnn(th.cat([image, coords], dim=1)))
        step = observations["step"].float().reshape(image.shape[0], -1)
        return th.cat([features, step], dim=1)


def policy_kwargs() -> dict[str, Any]:
    """The ``policy_kwargs`` of :data:`PPO_HYPERPARAMS` as Python objects."""
    import importlib

    return _eval_expr(PPO_HYPERPARAMS["policy_kwargs"], {"importlib": importlib})


def _eval_expr(expr: str, names: dict[str, Any]) -> Any:
    # Only for the expressions of this module and of the shipped zoo file (both
    # written by us): rl_zoo3 evaluates the same strings with eval().
    return eval(expr, {"__builtins__": {}, "dict": dict, **names})  # noqa: S307


def _schedule(value: float | str) -> float | Callable[[float], float]:
    """rl_zoo3's schedule strings: ``"lin_3e-4"`` decays linearly from 3e-4 to 0 over training."""
    if isinstance(value, str):
        if not value.startswith("lin_"):
            raise ValueError(f"unknown schedule {value!r}; use a number or 'lin_<initial value>'")
        initial = float(value[4:])
        return _LinearSchedule(initial)
    return float(value)


class _LinearSchedule:
    """``progress_remaining * initial`` (progress_remaining goes from 1 to 0), as rl_zoo3's ``linear_schedule``."""

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial


def _algo_kwargs(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``PPO(...)`` from zoo-style hyperparameters."""
    skip = {"n_envs", "n_timesteps", "policy", "env_wrapper", "normalize", "policy_kwargs"}
    kwargs = {k: v for k, v in hyperparams.items() if k not in skip}
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = _schedule(kwargs[key])
    return kwargs


# ---------------------------------------------------------------- envs
def make_train_env(
    n_envs: int = 8,
    seed: int = 0,
    *,
    vec_env: str = "dummy",
    normalize_reward: bool = True,
    gamma: float = 1.0,
    env_kwargs: dict[str, Any] | None = None,
):
    """The vectorised training env: ``gym.make(ENV_ID)`` -> Monitor -> StackVideoChannels, as rl_zoo3 builds it.

    Tasks come from the env's own generator (4-6 facets by default, the family
    split's distribution); env ``i`` is seeded with ``seed + i``. With
    ``normalize_reward`` the rewards are scaled by a running std (VecNormalize,
    observations untouched); the images are transposed to channel-first.
    """
    vec_cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}.get(vec_env)
    if vec_cls is None:
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {vec_env!r}")
    env = make_vec_env(
        ENV_ID,
        n_envs=n_envs,
        seed=seed,
        wrapper_class=StackVideoChannels,
        env_kwargs=env_kwargs or {},
        vec_env_cls=vec_cls,
    )
    if normalize_reward:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)
    return VecTransposeImage(env)


# ---------------------------------------------------------------- logging
class _LearningCurve(BaseCallback):
    """tqdm progress and a CSV learning curve: one row per rollout (and validation every ``eval_every`` rollouts)."""

    FIELDS = (
        "timesteps",
        "episodes",
        "train_loss_mean",
        "train_loss_std",
        "val_loss_mean",
        "val_loss_std",
        "wall_s",
    )

    def __init__(
        self,
        csv_path: Path,
        total_timesteps: int,
        *,
        val_tasks: list,
        eval_every: int,
        progress: bool,
    ) -> None:
        super().__init__()
        self.csv_path = Path(csv_path)
        self.total = total_timesteps
        self.val_tasks = val_tasks
        self.eval_every = eval_every
        self.progress = progress
        self._losses: list[float] = []
        self._episodes = 0
        self._rollouts = 0
        self._bar = None
        self._file = None
        self._writer = None
        self._start = 0.0
        self._last_val = float("nan")

    @property
    def partial_path(self) -> Path:
        """Where the curve is written during training; :meth:`publish` renames it over ``csv_path``."""
        return self.csv_path.with_name(self.csv_path.name + ".partial")

    def publish(self) -> None:
        """Rename the finished curve over ``csv_path``: an interrupted run never truncates the previous log."""
        os.replace(self.partial_path, self.csv_path)

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial_path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.FIELDS)
        self._bar = tqdm(total=self.total, desc="ppo", unit="step", disable=None if self.progress else True,
                         smoothing=0.1)  # None: off unless a terminal
        self._validate(force=True)

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "object_trajectory_loss" in info:
                self._losses.append(float(info["object_trajectory_loss"]))
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        self._rollouts += 1
        self._validate(force=False)

    def _validate(self, force: bool) -> None:
        losses, self._losses = self._losses, []
        self._episodes += len(losses)
        val_mean = val_std = ""
        if self.val_tasks and (force or self._rollouts % self.eval_every == 0):
            val = _evaluate_model(self.model, self.val_tasks)
            val_mean, val_std = f"{np.mean(val):.4f}", f"{np.std(val):.4f}"
            self._last_val = float(np.mean(val))
        train_mean = f"{np.mean(losses):.4f}" if losses else ""
        train_std = f"{np.std(losses):.4f}" if losses else ""
        self._writer.writerow(
            [self.num_timesteps, self._episodes, train_mean, train_std, val_mean, val_std,
             f"{time.perf_counter() - self._start:.1f}"]
        )
        self._file.flush()
        if losses:
            self._bar.set_postfix(train_loss=f"{np.mean(losses):.1f}", val_loss=f"{self._last_val:.1f}")

    def _on_training_end(self) -> None:
        if self._losses or self._rollouts % self.eval_every:
            self._validate(force=True)
        self._bar.close()
        self._file.close()


def _evaluate_model(model: PPO, tasks: list) -> list[float]:
    """Deterministic losses of ``model`` on ``tasks`` in a plain wrapped env (no vector env, no reward scaling)."""
    env = StackVideoChannels(VideoPlanarManipEnv())
    losses = []
    for task in tasks:
        obs, _ = env.reset(options={"task": task})
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        losses.append(float(info["object_trajectory_loss"]))
    env.close()
    return losses


# ---------------------------------------------------------------- training
#: Training-loop state that SB3 would pickle into the checkpoint (the last batch
#: of observations is about 1 MB) and that acting never needs.
_UNSHIPPED_STATE = ("_last_obs", "_last_original_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer")


def train_ppo(
    total_timesteps: int | None = None,
    seed: int = DEFAULT_SEED,
    out_path: str | os.PathLike = DEFAULT_CHECKPOINT,
    *,
    n_envs: int | None = None,
    vec_env: str = "dummy",
    log_path: str | os.PathLike | None = None,
    hyperparams: dict[str, Any] | None = None,
    n_val_tasks: int = 20,
    eval_every: int = 10,
    num_threads: int | None = 1,
    progress: bool = True,
    verbose: int = 0,
) -> Path:
    """Train PPO on ``VideoPlanarManip-v0`` and save an SB3 checkpoint; returns its path.

    Args:
        total_timesteps: environment steps (5 per episode); default ``n_timesteps`` of :data:`PPO_HYPERPARAMS`.
        seed: seeds SB3 (torch, numpy, the action noise) and the envs (env ``i`` gets ``seed + i``).
        out_path: the ``.zip`` checkpoint to write (parent folders are created).
        n_envs: parallel envs; default ``n_envs`` of :data:`PPO_HYPERPARAMS`.
        vec_env: ``"dummy"`` (one process; the default, faster here: see the README) or ``"subproc"``.
        log_path: the learning-curve CSV; default ``<out_path stem>_log.csv`` next to the checkpoint.
            One row per rollout: timesteps, episodes so far, mean/std loss of the training episodes
            of that rollout (stochastic policy), mean/std deterministic loss on ``n_val_tasks``
            held-out generated tasks (every ``eval_every`` rollouts, and first and last), wall seconds.
            It is written as ``<log>.partial`` and renamed once the checkpoint is saved (itself written
            to a temporary file and renamed), so an interrupted run never damages a shipped log or zip.
        hyperparams: overrides of :data:`PPO_HYPERPARAMS` (zoo names, e.g. ``{"n_steps": 32}``).
            The network kwargs cannot be overridden: the loader rebuilds the network from them.
        n_val_tasks: validation tasks for the CSV (seeds from 800000; never the zoo's evaluation tasks).
        eval_every: rollouts between two validations.
        num_threads: torch threads during training (``None`` leaves torch's setting). Results are
            reproducible for a given seed, thread count and machine (as far as SB3 and torch allow).
        progress: show a tqdm bar.
        verbose: SB3 verbosity.
    """
    hp = dict(PPO_HYPERPARAMS)
    if hyperparams:
        unknown = set(hyperparams) - set(hp)
        if unknown:
            raise ValueError(f"unknown PPO hyperparameter(s) {sorted(unknown)}; known: {sorted(hp)}")
        if "policy_kwargs" in hyperparams or "policy" in hyperparams or "env_wrapper" in hyperparams:
            raise ValueError("policy, policy_kwargs and env_wrapper are fixed; edit PPO_HYPERPARAMS and ppo.yml together")
        hp.update(hyperparams)
    total = int(total_timesteps if total_timesteps is not None else hp["n_timesteps"])
    if total <= 0:
        raise ValueError(f"total_timesteps must be positive, got {total}")
    n_envs = int(n_envs if n_envs is not None else hp["n_envs"])
    out_path = Path(out_path)
    if out_path.suffix != ".zip":
        out_path = out_path.with_suffix(".zip")
    log_path = Path(log_path) if log_path is not None else out_path.with_name(out_path.stem + "_log.csv")

    if num_threads is not None:
        previous_threads = th.get_num_threads()
        th.set_num_threads(num_threads)
    try:
        normalize = _eval_expr(hp["normalize"], {}) if isinstance(hp["normalize"], str) else hp["normalize"]
        env = make_train_env(
            n_envs,
            seed,
            vec_env=vec_env,
            normalize_reward=bool(normalize and normalize.get("norm_reward", False)),
            gamma=float(hp["gamma"]),
        )
        model = PPO(
            hp["policy"],
            env,
            seed=seed,
            verbose=verbose,
            device="cpu",
            policy_kwargs=policy_kwargs(),
            **_algo_kwargs(hp),
        )
        val_tasks = [
            sample_task(VALIDATION_SEED0 + i, n_facets=(4, 6), name=f"validation/{i}") for i in range(n_val_tasks)
        ]
        curve = _LearningCurve(log_path, total, val_tasks=val_tasks, eval_every=max(1, eval_every), progress=progress)
        model.learn(total_timesteps=total, callback=curve)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        # Drop Adam's moment estimates (2x the weights): the checkpoint is for
        # acting; training can still resume from it, with fresh moments.
        model.policy.optimizer.state.clear()
        with atomic_write(out_path) as handle:  # never half a zip
            model.save(handle, exclude=list(_UNSHIPPED_STATE))
        curve.publish()
        env.close()
    finally:
        if num_threads is not None:
            th.set_num_threads(previous_threads)
    return out_path


# ---------------------------------------------------------------- loading
def _policy_spaces(config: SceneConfig = DEFAULT_CONFIG) -> tuple[spaces.Dict, spaces.Box, StackVideoChannels]:
    wrapper = StackVideoChannels(VideoPlanarManipEnv(config=config))
    obs_space = wrapper.observation_space
    transposed = spaces.Dict(
        {
            key: VecTransposeImage.transpose_space(space) if key == "image" else space
            for key, space in obs_space.spaces.items()
        }
    )
    return transposed, wrapper.action_space, wrapper


def _regenerate_hint(path: Path) -> str:
    if path.resolve() == DEFAULT_CHECKPOINT:
        return f"regenerate it with `{REGENERATE_COMMAND}`"
    return f"regenerate it with `python examples/train.py --policy ppo --out {path}`"


#: The ``data`` entries SB3 writes as cloudpickled objects (``{":type:": ..., ":serialized:": "<base64>"}``)
#: and that the loader replaces by known objects, so they must be there and well formed.
_SERIALIZED_DATA = ("policy_class", "policy_kwargs", "observation_space", "action_space")
#: Plain ``data`` entries that SB3 reads to set the model up again: name -> (type, smallest value).
_NUMBER_DATA: dict[str, tuple[type, float]] = {
    "n_envs": (int, 1),
    "n_steps": (int, 1),
    "batch_size": (int, 1),
    "n_epochs": (int, 1),
    "gamma": (float, 0.0),
    "gae_lambda": (float, 0.0),
}


def _check_data(data: Any, path: Path, hint: str) -> None:
    """Structural checks of an SB3 zip's ``data`` entry (foreign zips carry no project hash to verify).

    SB3 copies every entry onto the model (``model.__dict__.update(data)``),
    so a malformed one would surface later as an AttributeError or TypeError
    far from the file; here it is a CheckpointError naming the file and the entry.
    """

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"PPO checkpoint {path}: {problem}; the file is damaged or not an SB3 PPO zip; {hint}")

    if not isinstance(data, dict):
        raise bad(f"its 'data' entry must be a JSON object, got a JSON {type(data).__name__}")
    for key in _SERIALIZED_DATA:
        item = data.get(key)
        if key == "policy_kwargs" and isinstance(item, dict) and ":serialized:" not in item:
            continue  # SB3 writes JSON-friendly kwargs (the default {}) as a plain object
        if not (isinstance(item, dict) and isinstance(item.get(":serialized:"), str)):
            raise bad(f"data[{key!r}] must be an SB3-serialized object, got {type(item).__name__}")
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item and not isinstance(item[":serialized:"], str):
            raise bad(f"data[{key!r}] is a serialized object without its serialized string")
    for key, (kind, low) in _NUMBER_DATA.items():
        value = data.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or not (math.isfinite(value) and value >= low):
            want = "an integer" if kind is int else "a finite number"
            raise bad(f"data[{key!r}] must be {want} >= {low:g}, got {value!r}")


SUPPORTED_CHECKPOINTS = (
    "the zoo loads SB3 PPO checkpoints of a MultiInputPolicy trained on dlm_gym.wrappers.StackVideoChannels "
    "(no gSDE) with SB3's default feature extractor (CombinedExtractor: NatureCNN on the image) or "
    "policies.rl.ppo.VideoCNN, any net_arch and a torch.nn activation; nothing in the file is unpickled"
)
_POLICY_CLASSES = {("stable_baselines3.common.policies", "MultiInputActorCriticPolicy")}
_EXTRACTORS = {
    "stable_baselines3.common.torch_layers.CombinedExtractor": "combined",
    "policies.rl.ppo.VideoCNN": "videocnn",
}
_ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Mish", "SELU", "CELU", "Sigmoid", "Softplus",
                "Hardtanh", "ReLU6", "Hardswish", "Tanhshrink", "Softsign")
#: ``policy_kwargs`` keys the loader understands; the others change the network in ways it does not rebuild.
_KNOWN_POLICY_KWARGS = {"net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs",
                        "share_features_extractor", "normalize_images", "log_std_init", "ortho_init",
                        "optimizer_class", "optimizer_kwargs"}


def _pickled_global(blob: str) -> tuple[str, str] | None:
    """``(module, name)`` of a class that cloudpickle stored by reference, read without unpickling; else None."""
    import base64
    import pickletools

    try:
        ops = list(pickletools.genops(base64.b64decode(blob)))
    except Exception:  # noqa: BLE001  (not base64, not a pickle)
        return None
    harmless = {"PROTO", "FRAME", "MEMOIZE", "STOP", "SHORT_BINUNICODE", "BINUNICODE", "STACK_GLOBAL", "GLOBAL"}
    if any(op.name not in harmless for op, _, _ in ops):
        return None  # anything but a reference to an importable class (cloudpickle's by-value code, say)
    glob = [arg for op, arg, _ in ops if op.name == "GLOBAL"]
    if glob:
        module, _, name = str(glob[0]).partition(" ")
        return module, name
    strings = [arg for op, arg, _ in ops if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    return (strings[0], strings[1]) if len(strings) == 2 else None


def _class_path(text: Any) -> str | None:
    """``"pkg.mod.Class"`` from SB3's readable form of a class, ``"<class 'pkg.mod.Class'>"``."""
    import re

    match = re.fullmatch(r"<class '([\w.]+)'>", text) if isinstance(text, str) else None
    return match.group(1) if match else None


def _layer_widths(weights: dict[str, th.Tensor], prefix: str) -> list[int]:
    """Output widths of the Linear layers ``<prefix>.<i>.weight`` (activations sit between, at odd i)."""
    indices = sorted(int(k[len(prefix) + 1 :].split(".")[0]) for k in weights
                     if k.startswith(prefix + ".") and k.endswith(".weight"))
    return [int(weights[f"{prefix}.{i}.weight"].shape[0]) for i in indices]


def _infer_policy_kwargs(data: dict, weights: dict[str, th.Tensor], unsupported: Callable[[str], Exception],
                         obs_space: spaces.Dict, act_space: spaces.Box) -> dict[str, Any]:
    """The ``policy_kwargs`` that rebuild the checkpoint's network: read from SB3's readable metadata
    (classes by name, plain values) and from the weights' shapes; never unpickled."""
    policy_class = _pickled_global(data["policy_class"][":serialized:"])
    if policy_class not in _POLICY_CLASSES:
        shown = ".".join(policy_class) if policy_class else "a class stored by value (code)"
        raise unsupported(f"its policy class is {shown}, not SB3's MultiInputPolicy")
    if data.get("use_sde"):
        raise unsupported("it was trained with gSDE (use_sde=True)")
    spaces_text = data["observation_space"].get("spaces")
    if spaces_text is not None and spaces_text != str(dict(obs_space.spaces)):
        raise unsupported(f"it was trained on observations {spaces_text}, not StackVideoChannels' "
                          f"{dict(obs_space.spaces)}")
    shape = data["action_space"].get("_shape")
    if shape is not None and list(shape) != list(act_space.shape):
        raise unsupported(f"its actions have shape {tuple(shape)}, not {act_space.shape}")

    stored = {k: v for k, v in data["policy_kwargs"].items() if not k.startswith(":")}
    unknown = sorted(set(stored) - _KNOWN_POLICY_KWARGS)
    if unknown:
        raise unsupported(f"its policy_kwargs set {unknown}")
    extractor_path = _class_path(stored.get("features_extractor_class",
                                            "<class 'stable_baselines3.common.torch_layers.CombinedExtractor'>"))
    kind = _EXTRACTORS.get(extractor_path or "")
    if kind is None:
        raise unsupported(f"its feature extractor is {stored['features_extractor_class']}")
    activation = _class_path(stored.get("activation_fn", "<class 'torch.nn.modules.activation.Tanh'>"))
    module, _, name = (activation or "").rpartition(".")
    if not module.startswith("torch.nn.modules") or name not in _ACTIVATIONS:
        raise unsupported(f"its activation is {stored['activation_fn']}")
    extractor_kwargs = stored.get("features_extractor_kwargs", {})
    if not isinstance(extractor_kwargs, dict):
        extractor_kwargs = {}

    def width(key: str, dim: int = 0) -> int:
        if key not in weights:
            raise unsupported(f"its weights have no {key!r} (they are not of a {extractor_path} network)")
        return int(weights[key].shape[dim])

    if kind == "combined":
        features = {"cnn_output_dim": width("features_extractor.extractors.image.linear.0.weight")}
        if isinstance(extractor_kwargs.get("normalized_image"), bool):
            features["normalized_image"] = extractor_kwargs["normalized_image"]
        extractor_class = CombinedExtractor
    else:
        width("features_extractor.cnn.0.weight")  # raises when the weights are not a VideoCNN's
        features = {"features_dim": width("features_extractor.linear.0.weight"),
                    "channels": tuple(_layer_widths(weights, "features_extractor.cnn"))}
        extractor_class = VideoCNN
    shared = all(th.equal(weights[k], weights.get("vf_" + k, weights[k])) for k in weights
                 if k.startswith("features_extractor."))
    inferred: dict[str, Any] = {
        "features_extractor_class": extractor_class,
        "features_extractor_kwargs": features,
        "net_arch": {"pi": _layer_widths(weights, "mlp_extractor.policy_net"),
                     "vf": _layer_widths(weights, "mlp_extractor.value_net")},
        "activation_fn": getattr(nn, name),
        "share_features_extractor": shared,
    }
    if isinstance(stored.get("normalize_images"), bool):
        inferred["normalize_images"] = stored["normalize_images"]
    return inferred


def load_ppo_model(path: str | os.PathLike = DEFAULT_CHECKPOINT, config: SceneConfig = DEFAULT_CONFIG) -> PPO:
    """Load an SB3 PPO checkpoint without unpickling (see the module docstring).

    Besides the zoo's own checkpoints this loads a PPO that a user trained on
    :class:`dlm_gym.wrappers.StackVideoChannels` with SB3's ``MultiInputPolicy``
    and either SB3's default feature extractor (``CombinedExtractor``, NatureCNN
    on the image) or :class:`VideoCNN`: the network sizes (extractor widths,
    ``net_arch``, whether actor and critic share the extractor) are inferred
    from the weights, the classes (policy, extractor, activation) are read by
    name from SB3's readable metadata and matched against a fixed list.

    Raises:
        CheckpointError: if the file is missing, is not a readable SB3 zip, or holds a network the
            loader does not rebuild (:data:`SUPPORTED_CHECKPOINTS`).
    """
    path = Path(path)
    hint = _regenerate_hint(path)
    if not path.is_file():
        raise CheckpointError(f"PPO checkpoint {path} not found; {hint}")
    obs_space, act_space, _ = _policy_spaces(config)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode("utf-8"))
    except Exception as exc:  # noqa: BLE001  (zipfile, zlib, a bad CRC, UTF-8 and JSON errors: a damaged file)
        raise CheckpointError(
            f"PPO checkpoint {path} is corrupt or not an SB3 zip ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    _check_data(data, path, hint)
    try:
        with zipfile.ZipFile(path) as archive:
            import io

            weights = th.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
        if not (isinstance(weights, dict) and all(isinstance(v, th.Tensor) for v in weights.values())):
            raise TypeError(f"policy.pth holds a {type(weights).__name__}, not a state dict of tensors")
    except Exception as exc:  # noqa: BLE001  (a missing or damaged policy.pth)
        raise CheckpointError(
            f"PPO checkpoint {path} has no readable policy weights ({type(exc).__name__}: {exc}); {hint}"
        ) from None

    def unsupported(problem: str) -> CheckpointError:
        return CheckpointError(f"PPO checkpoint {path} is not supported: {problem}; {SUPPORTED_CHECKPOINTS}")

    inferred = _infer_policy_kwargs(data, weights, unsupported, obs_space, act_space)
    known = {
        "policy_class": MultiInputActorCriticPolicy,
        "policy_kwargs": inferred,
        "observation_space": obs_space,
        "action_space": act_space,
        "learning_rate": 0.0,
        "lr_schedule": _LinearSchedule(0.0),
        "clip_range": _LinearSchedule(0.0),
        "clip_range_vf": None,
    }
    custom = dict(known)
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item and key not in known:
            custom[key] = None  # never unpickle: anything else serialized is not needed for inference
    try:
        model = PPO.load(path, device="cpu", custom_objects=custom)
    except Exception as exc:  # noqa: BLE001  (SB3 raises many kinds for bad archives)
        raise CheckpointError(
            f"PPO checkpoint {path} could not be loaded ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    return model


# ---------------------------------------------------------------- the policy
@register_policy("ppo")
class PPOPolicy(Policy):
    """The trained PPO agent, acting closed loop: one deterministic SB3 action per observation.

    ``make_policy("ppo")`` loads :data:`DEFAULT_CHECKPOINT`; pass
    ``checkpoint=PATH`` for another one. Observations are wrapped exactly as in
    training (:class:`dlm_gym.wrappers.StackVideoChannels`).
    """

    name = "ppo"

    def __init__(
        self,
        config: SceneConfig = DEFAULT_CONFIG,
        checkpoint: str | os.PathLike | None = None,
        deterministic: bool = True,
    ) -> None:
        super().__init__(config)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
        self.deterministic = deterministic
        self.model = load_ppo_model(self.checkpoint, config)
        _, _, self._wrapper = _policy_spaces(config)

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        pass  # closed loop: everything comes from each observation

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        wrapped = self._wrapper.observation(obs)
        with th.no_grad():
            action, _ = self.model.predict(wrapped, deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float32).reshape(self.config.num_fingers, 4)
