"""Shared neural pieces of the zoo: the video encoder (paper eq. 3) and the MLP heads.

"Network details" (Section 5): each frame goes through 3 convolutions with 6,
12 and 24 channels; a 5-layer bidirectional LSTM combines the frames into the
latent ``L^V`` of size 75; every MLP has 3 fully connected hidden layers of the
size of its input, ReLU activations, dropout 0.2 and batch normalisation.

A localising alternative (not in the paper; ``examples/encoder_study.py``
measures it against the paper's encoder): :class:`KeypointEncoder` keeps the
frames' geometry (CoordConv inputs, one stride-2 layer, spatial soft-argmax
keypoints in world metres, :class:`SpatialSoftArgmax`) and :class:`PoseHead`
reads from its keypoints only what a video shows: each keyframe's centroid in
the world frame and its rotation relative to the first keyframe.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig

__all__ = [
    "VideoEncoder",
    "MLP",
    "video_to_tensor",
    "pixel_centres_world",
    "SpatialSoftArgmax",
    "KeypointEncoder",
    "PoseHead",
]


def video_to_tensor(video) -> torch.Tensor:
    """uint8 videos ``(B, T, H, W, 3)`` (NumPy or torch) -> float ``(B, T, 3, H, W)`` in [0, 1]."""
    v = torch.as_tensor(video)
    if v.dtype != torch.uint8:
        raise ValueError(f"videos must be uint8 frames, got {v.dtype}")
    if v.ndim == 4:
        v = v[None]
    if v.ndim != 5 or v.shape[-1] != 3:
        raise ValueError(f"videos must have shape (B, T, H, W, 3), got {tuple(v.shape)}")
    return v.permute(0, 1, 4, 2, 3).float().div_(255.0)


class VideoEncoder(nn.Module):
    """``L^V = LSTM(CNN(I_1), ..., CNN(I_T))`` (eq. 3).

    Args:
        frame_size: side of the square frames (50).
        latent_dim: size of ``L^V`` (75 in the paper).
        lstm_layers: depth of the bidirectional LSTM (5 in the paper).
        channels: convolution widths (6, 12, 24 in the paper).
    """

    def __init__(
        self,
        frame_size: int = 50,
        latent_dim: int = 75,
        lstm_layers: int = 5,
        channels: tuple[int, ...] = (6, 12, 24),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = 3, frame_size
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=5, stride=2, padding=2), nn.ReLU()]
            c_in, side = c_out, (side + 1) // 2
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        self.frame_features = c_in * side * side
        self.lstm = nn.LSTM(
            self.frame_features, latent_dim, num_layers=lstm_layers, batch_first=True, bidirectional=True
        )
        self.project = nn.Linear(2 * latent_dim, latent_dim)
        self.latent_dim = latent_dim

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` float frames -> ``(B, latent_dim)`` latent."""
        B, T = video.shape[:2]
        feats = self.cnn(video.reshape(B * T, *video.shape[2:])).reshape(B, T, -1)
        _, (h, _) = self.lstm(feats)
        # last layer, both directions: the forward pass has read every frame, so has the backward one
        return self.project(torch.cat([h[-2], h[-1]], dim=-1))


class MLP(nn.Module):
    """3 hidden layers of the input's width, each Linear -> BatchNorm -> ReLU -> Dropout, then a linear output."""

    def __init__(self, in_dim: int, out_dim: int, hidden_layers: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(hidden_layers):
            layers += [nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ------------------------------------------------------------ localising encoder
def pixel_centres_world(side: int, config: SceneConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """World metres ``(side, side, 2)`` of the pixel centres of a ``side`` x ``side`` grid over the camera's view.

    Row ``i``, column ``j`` is at ``x = x0 + (j + 0.5) / side * (x1 - x0)``, ``y = y1 - (i + 0.5) / side * (y1 - y0)``:
    the renderer's convention (``dlm_gym.render``; ``policies.oracle.derender._pixel_to_world`` at
    ``side = frame_size``). A coarser grid (``side = 25`` for 50 x 50 frames) tiles the same view with
    larger cells, whose centres these are.
    """
    (x0, x1), (y0, y1) = config.view_x, config.view_y
    centres = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    x = x0 + centres * (x1 - x0)
    y = y1 - centres * (y1 - y0)
    return torch.stack(torch.meshgrid(y, x, indexing="ij")[::-1], dim=-1).float()


class SpatialSoftArgmax(nn.Module):
    """Heatmaps ``(N, K, h, w)`` -> expected positions ``(N, K, 2)`` in world metres, and the attention maps.

    Each heatmap becomes a distribution ``softmax(heatmap / tau_k)`` over its
    cells; the keypoint is the expected world position of the cell centres
    (:func:`pixel_centres_world`) under it: sub-cell precise, differentiable.
    ``tau_k = exp(log_tau_k)`` is a learnable temperature per keypoint.
    :meth:`spread` gives each distribution's covariance (its second central
    moments, the image moments of order 2 of a heatmap).

    Args:
        keypoints: K, the number of heatmaps.
        side: the heatmaps' side, in cells.
        config: the camera's view (``view_x``, ``view_y``).
        temperature: the initial ``tau``.
    """

    # buffers (registered in __init__), declared for type checkers
    grid: torch.Tensor
    centre: torch.Tensor
    grid_moments: torch.Tensor

    def __init__(self, keypoints: int, side: int, config: SceneConfig = DEFAULT_CONFIG, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.log_tau = nn.Parameter(torch.full((keypoints,), math.log(temperature)))
        grid = pixel_centres_world(side, config).reshape(side * side, 2)
        self.register_buffer("grid", grid, persistent=False)
        # second moments about the view's centre (small numbers: no cancellation in float32)
        self.register_buffer("centre", grid.mean(0), persistent=False)
        c = grid - grid.mean(0)
        self.register_buffer(
            "grid_moments", torch.stack([c[:, 0] ** 2, c[:, 0] * c[:, 1], c[:, 1] ** 2], -1), persistent=False
        )
        self.side = side

    def forward(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, K, h, w)`` -> keypoints ``(N, K, 2)`` (metres) and attention ``(N, K, h * w)`` (rows sum to 1)."""
        N, K, h, w = heatmaps.shape
        if (h, w) != (self.side, self.side):
            raise ValueError(f"heatmaps must be {self.side} x {self.side}, got {h} x {w}")
        tau = self.log_tau.exp()[:, None]
        attention = torch.softmax(heatmaps.reshape(N, K, h * w) / tau, dim=-1)
        return attention @ self.grid, attention

    def spread(self, attention: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Covariance ``(N, K, 3)`` = ``(var x, cov xy, var y)`` in m^2 of each attention map about its keypoint."""
        m = points - self.centre
        return attention @ self.grid_moments - torch.stack([m[..., 0] ** 2, m[..., 0] * m[..., 1], m[..., 1] ** 2], -1)


class KeypointEncoder(nn.Module):
    """Per frame: a CoordConv CNN at half resolution, then K spatial soft-argmax keypoints in world metres.

    Each frame ``(3, S, S)`` gets two CoordConv channels (the pixel centres'
    x and y, normalised to [-1, 1] over the view, y up). A 4 x 4 stride-2
    convolution (padding 1, so cell ``j`` is centred on the 2 x 2 input
    block it halves) makes ``S/2 x S/2`` feature maps, ``depth - 1`` 3 x 3
    convolutions keep that size, and a 1 x 1 convolution gives K heatmaps.
    :class:`SpatialSoftArgmax` turns them into keypoints; each keypoint's
    feature is the last feature map averaged under its attention, and its
    spread the covariance of its attention (which turns with the object when
    the attention covers part of it: what image moments of order 2 measure).

    Frames are encoded independently (no recurrence): what is compared across
    frames is left to the head (:class:`PoseHead`).

    Args:
        keypoints: K.
        channels: width of the convolutions.
        depth: convolutions before the heatmap layer (at least 1: the stride-2 one).
        config: the frame size and the camera's view.
        temperature: initial soft-argmax temperature.
    """

    coords: torch.Tensor  # a buffer, declared for type checkers

    def __init__(
        self,
        keypoints: int = 8,
        channels: int = 16,
        depth: int = 2,
        config: SceneConfig = DEFAULT_CONFIG,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if keypoints < 1 or channels < 1 or depth < 1:
            raise ValueError(f"keypoints, channels and depth must be >= 1, got {keypoints}, {channels}, {depth}")
        S = config.frame_size
        if S % 2:
            raise ValueError(f"KeypointEncoder needs an even frame_size, got {S}")
        side = S // 2
        # CoordConv channels: pixel-centre coordinates normalised to [-1, 1], x to the right, y up
        centres = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2.0 - 1.0
        coords = torch.stack([centres[None, :].expand(S, S), -centres[:, None].expand(S, S)])
        self.register_buffer("coords", coords, persistent=False)
        layers: list[nn.Module] = [nn.Conv2d(5, channels, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.heatmap = nn.Conv2d(channels, keypoints, kernel_size=1)
        self.soft_argmax = SpatialSoftArgmax(keypoints, side, config, temperature)
        self.keypoints, self.channels, self.side = keypoints, channels, side
        self.frame_features = keypoints * (5 + channels)
        """Size of the per-frame feature vector: per keypoint its (x, y), spread (3) and features (C)."""
        self.frame_size = S

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode ``(B, T, 3, S, S)`` float frames in [0, 1] (:func:`video_to_tensor`).

        Returns a dict:

        - ``keypoints``: ``(B, T, K, 2)`` world metres (x, y) of the K soft-argmax keypoints;
        - ``keypoint_features``: ``(B, T, K, C)`` the feature maps averaged under each keypoint's attention;
        - ``keypoint_spread``: ``(B, T, K, 3)`` the covariance ``(var x, cov xy, var y)`` (m^2) of each attention;
        - ``attention``: ``(B, T, K, S/2, S/2)`` each keypoint's softmax distribution over the cells;
        - ``features``: ``(B, T, K * (5 + C))`` the per-frame vector: per keypoint, its (x, y), spread and features.
        """
        if video.ndim != 5 or video.shape[2] != 3 or video.shape[-2:] != (self.frame_size, self.frame_size):
            raise ValueError(
                f"video must be (B, T, 3, {self.frame_size}, {self.frame_size}) floats, got {tuple(video.shape)}"
            )
        B, T = video.shape[:2]
        frames = video.reshape(B * T, 3, self.frame_size, self.frame_size)
        frames = torch.cat([frames, self.coords.expand(B * T, -1, -1, -1)], dim=1)
        feats = self.cnn(frames)  # (BT, C, h, w)
        points, attention = self.soft_argmax(self.heatmap(feats))
        point_feats = attention @ feats.flatten(2).transpose(1, 2)  # (BT, K, C)
        spread = self.soft_argmax.spread(attention, points)  # (BT, K, 3)
        K, C, h = self.keypoints, self.channels, self.side
        return {
            "keypoints": points.reshape(B, T, K, 2),
            "keypoint_features": point_feats.reshape(B, T, K, C),
            "keypoint_spread": spread.reshape(B, T, K, 3),
            "attention": attention.reshape(B, T, K, h, h),
            "features": torch.cat([points, spread, point_feats], dim=-1).reshape(B, T, K * (5 + C)),
        }


class PoseHead(nn.Module):
    """Keypoints -> each keyframe's centroid ``(x, y)`` (world metres) and rotation relative to keyframe 0.

    Only what a video shows is predicted: positions in the world frame, and
    rotations relative to the first keyframe (an unseen polygon's own
    frame, hence its absolute angle, is arbitrary).

    - **position**: a learned convex combination of the keypoints (an
      anchor that moves with the image, so a translation of the object
      translates the estimate) plus an MLP correction from the frame's
      translation-invariant features (keypoints relative to the anchor, their
      spreads and features), which starts at zero.
    - **rotation**: two closed-form estimates, summed as vectors
      ``(sin, cos)`` scaled by their evidence: the weighted Procrustes
      rotation that best turns the anchored keypoints of keyframe 0 onto
      those of keyframe t (exact for keypoints fixed on the object), and the
      turn of the keypoints' spreads (an attention's covariance turns by
      ``theta`` when the attention turns with the object; its doubled-angle
      orientation ``(var x - var y, 2 cov xy)`` turns by ``2 theta``, halved
      back: exact within +-90 degrees, the image-moments estimate); then an
      MLP correction from both frames' invariant features; normalised to a
      unit vector. Keyframe 0's rotation is ``(0, 1)`` by definition.

    Args:
        keypoints: K of the encoder.
        keypoint_channels: C of the encoder's keypoint features.
        hidden: width of the two MLPs (two hidden layers each).
    """

    def __init__(self, keypoints: int, keypoint_channels: int, hidden: int = 64) -> None:
        super().__init__()
        frame = keypoints * (5 + keypoint_channels)
        self.anchor_logits = nn.Parameter(torch.zeros(keypoints))
        self.procrustes_logits = nn.Parameter(torch.zeros(keypoints))
        self.moment_logits = nn.Parameter(torch.zeros(keypoints))
        self.position_mlp = self._mlp(frame, hidden, 2)
        self.rotation_mlp = self._mlp(2 * frame + 2, hidden, 2)

    @staticmethod
    def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
        out = nn.Linear(hidden, n_out)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), out)

    def forward(self, encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """From :meth:`KeypointEncoder.forward`'s dict.

        Returns a dict:

        - ``position``: ``(B, T, 2)`` world metres, each keyframe's centroid;
        - ``rotation``: ``(B, T, 2)`` unit ``(sin, cos)`` of the rotation relative to keyframe 0 (exactly
          ``(0, 1)`` at keyframe 0);
        - ``angle``: ``(B, T)`` that rotation in radians, in (-pi, pi].
        """
        points, point_feats = encoded["keypoints"], encoded["keypoint_features"]  # (B, T, K, 2), (B, T, K, C)
        spread = encoded["keypoint_spread"]  # (B, T, K, 3)
        B, T = points.shape[:2]
        anchor = (torch.softmax(self.anchor_logits, 0)[:, None] * points).sum(-2)  # (B, T, 2)
        rel = points - anchor[:, :, None]  # translation-invariant keypoints
        # translation-invariant frame features (B, T, K * (5 + C)), lengths scaled to decimetres for the MLPs
        invariant = torch.cat([10.0 * rel, 100.0 * spread, point_feats], dim=-1).flatten(2)
        position = anchor + 0.01 * self.position_mlp(invariant)
        # weighted Procrustes (decimetres): the rotation turning keyframe 0's anchored keypoints onto keyframe t's
        w = torch.softmax(self.procrustes_logits, 0)
        a, b = 10.0 * rel[:, :1], 10.0 * rel  # (B, 1, K, 2), (B, T, K, 2)
        procrustes = torch.stack(
            [(w * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])).sum(-1), (w * (a * b).sum(-1)).sum(-1)], -1
        )  # (B, T, 2): |.| sin, |.| cos
        # spreads: doubled-angle orientations z = (var x - var y) + i 2 cov xy (dm^2) turn by 2 theta
        v = torch.softmax(self.moment_logits, 0)
        sp = 100.0 * spread
        zr, zi = sp[..., 0] - sp[..., 2], 2.0 * sp[..., 1]  # (B, T, K)
        re = (v * (zr * zr[:, :1] + zi * zi[:, :1])).sum(-1)  # sum_k v_k z_t conj(z_0)
        im = (v * (zi * zr[:, :1] - zr * zi[:, :1])).sum(-1)
        mod = torch.sqrt(re**2 + im**2 + 1e-12)
        half = torch.stack(  # the principal square root: the angle halved, the evidence sqrt(|Z|)
            [torch.sign(im) * torch.sqrt((mod - re) / 2 + 1e-10), torch.sqrt((mod + re) / 2 + 1e-10)], -1
        )
        base = procrustes + half
        base = base / torch.sqrt((base**2).sum(-1, keepdim=True) + 1e-12)
        pair = torch.cat([invariant, invariant[:, :1].expand(B, T, -1), base], dim=-1)
        raw = base + self.rotation_mlp(pair)
        rotation = raw / torch.sqrt((raw**2).sum(-1, keepdim=True) + 1e-12)
        first = torch.tensor([0.0, 1.0], dtype=rotation.dtype, device=rotation.device).expand(B, 1, 2)
        rotation = torch.cat([first, rotation[:, 1:]], dim=1)
        return {"position": position, "rotation": rotation, "angle": torch.atan2(rotation[..., 0], rotation[..., 1])}
