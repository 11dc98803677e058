"""Feature extractors for stable-baselines3 policies on ``StackVideoChannels`` observations.

:class:`NNPlanExtractor` is the extractor of the shipped ``ppo`` (started from
the ``nn`` policy), :class:`VideoCNN` that of ``ppo_scratch``. Saved SB3 zips and
the rl-zoo file ``policies/rl/hyperparams/ppo_scratch.yml`` name VideoCNN as
``policies.rl.ppo.VideoCNN`` (it lived there first), so :mod:`policies.rl.ppo`
re-exports it and the checkpoint loader accepts both names.
"""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

__all__ = ["VideoCNN", "NNPlanExtractor"]


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
        # channel-first: SB3 transposes image observations before they get here
        c_in, h, w = image_space.shape
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
            layers += [
                nn.Conv2d(previous, width, kernel, stride=2, padding=kernel // 2),
                nn.ReLU(),
            ]
            previous = width
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        with th.no_grad():
            n_flat = self.cnn(th.zeros(1, c_in + 2, h, w)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """``(batch, features_dim + T + 1)``: CNN features of the image, then the one-hot step."""
        image = observations["image"]
        coords = self.coords.expand(image.shape[0], -1, -1, -1)
        features = self.linear(self.cnn(th.cat([image, coords], dim=1)))
        step = observations["step"].float().reshape(image.shape[0], -1)
        return th.cat([features, step], dim=1)


class NNPlanExtractor(BaseFeaturesExtractor):
    """Features that start PPO from the ``nn`` policy: its planned action for the current keyframe first.

    ``nn`` (:class:`policies.dlm.models.NNNet`) is behaviour cloning of the
    oracle: trained with ``L_NN`` (squared error against the oracle's
    normalised commands) on the oracle-labelled corpus. It plans all T
    keyframe commands from the target video, in the units of the action box.
    This extractor reads the target video back from the ``image`` stack (its
    first ``3 T`` channels), runs the network once and returns, per observation,

    1. the planned action of the current keyframe (``N * 4`` numbers), for the actor;
    2. the same, detached, the network's latent ``L^V`` (detached) and the
       one-hot step, for the critic.

    Actor and critic share the extractor (one network pass per observation,
    which is most of the cost), but the critic's gradients stop at the detached
    features, so the value loss never moves the plan. With
    ``net_arch=dict(pi=[])`` and an action head that copies the first
    ``N * 4`` features (:func:`policies.rl.warm_start.nn_initialised_ppo`) the
    policy's mean action is exactly ``nn``'s, and PPO fine-tunes the plan network.
    """

    TRAINABLE = ("all", "head", "none")
    """What of the plan network PPO may change: all of it, its MLP head (the video encoder frozen), or
    nothing (only SB3's action head then learns: linear corrections from the plan, ``L^V`` and the step)."""

    def __init__(
        self, observation_space: spaces.Dict, latent_dim: int = 75, lstm_layers: int = 5, trainable: str = "all"
    ) -> None:
        from dlm_gym.config import DEFAULT_CONFIG
        from policies.dlm.models import NNNet

        image_space = observation_space["image"]
        step_space = observation_space["step"]
        config = DEFAULT_CONFIG
        T, N = config.horizon, config.num_fingers
        if image_space.shape != (3 * (T + 1), config.frame_size, config.frame_size):
            raise ValueError(
                f"NNPlanExtractor expects a channel-first StackVideoChannels image of shape "
                f"{(3 * (T + 1), config.frame_size, config.frame_size)}, got {image_space.shape}"
            )
        if not isinstance(step_space, spaces.Discrete):
            raise TypeError(f"NNPlanExtractor expects a Discrete 'step' space, got {step_space}")
        if trainable not in self.TRAINABLE:
            raise ValueError(f"trainable must be one of {self.TRAINABLE}, got {trainable!r}")
        super().__init__(observation_space, 2 * N * 4 + latent_dim + int(step_space.n))
        self.plan = NNNet(config, latent_dim, lstm_layers)
        self.horizon = T
        self.trainable = trainable
        frozen = {"all": [], "head": [self.plan.encoder], "none": [self.plan]}[trainable]
        for module in frozen:
            module.requires_grad_(False)
        self.plan.eval()

    def train(self, mode: bool = True) -> NNPlanExtractor:
        """The plan network stays in eval mode: PPO's rollouts and its updates must see the same function
        (its MLP has batch norm and dropout, which would turn the probability ratios into noise)."""
        super().train(mode)
        self.plan.eval()
        return self

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """``(batch, 2 N 4 + latent_dim + T + 1)``: planned action; then, detached, it again, ``L^V`` and the step."""
        image = observations["image"]
        B, T = image.shape[0], self.horizon
        # SB3 has scaled the uint8 stack to [0, 1], as NNNet's video_to_tensor does
        video = image[:, : 3 * T].reshape(B, T, 3, *image.shape[2:])
        with th.set_grad_enabled(th.is_grad_enabled() and self.trainable == "all"):
            latent = self.plan.encoder(video)
        with th.set_grad_enabled(th.is_grad_enabled() and self.trainable != "none"):
            plan = self.plan.head(latent).reshape(B, T, -1)
        step = observations["step"].float().reshape(B, -1)
        current = (plan * step[:, :T, None]).sum(dim=1)  # the terminal index T plans nothing
        return th.cat([current, current.detach(), latent.detach(), step], dim=1)
