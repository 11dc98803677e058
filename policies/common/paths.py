"""Where the zoo keeps its files: one definition, used by every loader and by the run records."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGE_DIR", "REPO_ROOT", "CHECKPOINT_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``policies`` package."""
REPO_ROOT = PACKAGE_DIR.parent
"""The checkout (or site-packages) holding ``policies``: commands in run records are written relative to it."""
CHECKPOINT_DIR = PACKAGE_DIR / "checkpoints"
"""The shipped checkpoints: ``<name>.pt`` for the learned policies, ``<name>.zip`` for the SB3 agents
(``ppo``, ``ppo_scratch``, and ``ppo_state`` with its ``ppo_state_obs_norm.npz``)."""
