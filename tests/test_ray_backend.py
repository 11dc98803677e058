"""The Ray backend of generate_dataset.py (issue 12) makes the same splits and corpora as the process pool.

"The same": every array of the file but ``oracle_solve_s`` (wall-clock solve
times) bit for bit, dtypes included, and ``meta`` but its run-dependent
entries (:data:`~dlm_gym.datasets.TIMING_META_KEYS`: the backend and the solve
time statistics); so the :func:`~dlm_gym.datasets.content_checksum` agrees
while the file checksum, which covers the solve times, differs.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from dlm_gym.datasets import (
    SEED_RANGES,
    TIMING_ARRAYS,
    TIMING_META_KEYS,
    CorpusSpec,
    SplitSpec,
    generate_corpus,
    generate_split,
    load_corpus,
    split_checksums,
)

ray = pytest.importorskip("ray")

SPEC = SplitSpec(4, (4, 6), "polygon", seed=SEED_RANGES["corpus"][0] + 500_000)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module (the backend joins an initialised Ray and leaves it running)."""
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - started:.1f} s")
    yield
    ray.shutdown()


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.slow
def test_ray_split_is_bit_identical_to_the_pool_split(tmp_path, local_ray):
    pool_path, pool_stats = generate_split("tiny", SPEC, out_dir=tmp_path / "pool", workers=2, progress=False)
    started = time.perf_counter()
    ray_path, ray_stats = generate_split("tiny", SPEC, out_dir=tmp_path / "ray", backend="ray", progress=False)
    print(f"ray backend, {SPEC.size} tasks: {time.perf_counter() - started:.2f} s")
    a, b = _arrays(pool_path), _arrays(ray_path)
    assert sorted(a) == sorted(b)
    for key in sorted(a):
        if key in (*TIMING_ARRAYS, "meta", "checksum"):
            continue
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key
    meta_a, meta_b = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
    assert (meta_a["backend"], meta_b["backend"]) == ("pool", "ray")
    assert {k for k in meta_a if meta_a[k] != meta_b[k]} <= set(TIMING_META_KEYS)
    assert {k: v for k, v in pool_stats.items() if k not in TIMING_META_KEYS} == {
        k: v for k, v in ray_stats.items() if k not in TIMING_META_KEYS
    }
    assert split_checksums(pool_path)[1] == split_checksums(ray_path)[1]  # content checksums agree


def test_ray_corpus_equals_the_pool_corpus(tmp_path, local_ray):
    spec = CorpusSpec(size=4, shard_size=2)
    pool, _ = generate_corpus(tmp_path / "pool", spec, workers=1, progress=False)
    on_ray, generated = generate_corpus(tmp_path / "ray", spec, backend="ray", progress=False)
    assert generated == 2 and on_ray["backend"] == "ray"
    assert on_ray["content_checksum"] == pool["content_checksum"]
    assert [s["content_checksum"] for s in on_ray["shards"]] == [s["content_checksum"] for s in pool["shards"]]
    assert [t.seed for t in load_corpus(tmp_path / "ray").shard(1).tasks] == [
        t.seed for t in load_corpus(tmp_path / "pool").shard(1).tasks
    ]
