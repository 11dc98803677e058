import os

# Rendering must never need a display in tests (dlm_gym.render sets this too).
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def square():
    """A 20 cm square in its centroid frame."""
    return np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
