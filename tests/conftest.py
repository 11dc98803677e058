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


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def load_example():
    """Import a script of ``examples/`` by name (they are scripts, not a package) and return its module."""
    import importlib.util
    import sys

    def load(name: str):
        if str(EXAMPLES) not in sys.path:  # scripts import their siblings (diffsim_study imports benchmark)
            sys.path.insert(0, str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
