"""Shared neural pieces of the zoo: the video encoder (paper eq. 3) and the MLP heads.

"Network details" (Section 5): each frame goes through 3 convolutions with 6,
12 and 24 channels; a 5-layer bidirectional LSTM combines the frames into the
latent ``L^V`` of size 75; every MLP has 3 fully connected hidden layers of the
size of its input, ReLU activations, dropout 0.2 and batch normalisation.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VideoEncoder", "MLP", "video_to_tensor"]


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
