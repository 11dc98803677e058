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


@pytest.fixture(scope="session")
def make_tiny_corpus(tmp_path_factory):
    """``make(name, size, shard_size, val_offset) -> folder``: a generated corpus ``folder/corpus`` and a
    3-task validation split ``folder/val.npz`` from our validation seeds (offset by ``val_offset``)."""
    from dlm_gym.datasets import SEED_RANGES, CorpusSpec, SplitSpec, generate_corpus, generate_split

    def make(name: str, size: int, shard_size: int, val_offset: int):
        root = tmp_path_factory.mktemp(name)
        generate_corpus(root / "corpus", CorpusSpec(size=size, shard_size=shard_size, time_limit=5.0), progress=False)
        generate_split(
            "val",
            SplitSpec(3, (4, 6), "polygon", seed=SEED_RANGES["validation"][0] + val_offset),
            out_dir=root,
            time_limit=5.0,
            progress=False,
        )
        return root

    return make
