import dataclasses

import numpy as np
import pytest

import dlm_gym
from dlm_gym.actions import as_executed
from dlm_gym.datasets import (
    FORMAT_VERSION,
    SEED_RANGES,
    SPLIT_NAMES,
    SPLIT_SPECS,
    DatasetError,
    available_splits,
    generate_split,
    load_split,
    save_split,
    seed_range_of,
)
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.render import Renderer
from dlm_gym.task import sample_task


def _tiny_split(path, n=3):
    tasks = [sample_task(s, name=f"x/{s}") for s in range(n)]
    r = Renderer()
    videos = np.stack([r.video(t.polygon, t.trajectory) for t in tasks])
    T = tasks[0].horizon
    return save_split(
        path,
        tasks,
        videos=videos,
        commands=np.zeros((n, T, 2, 4)),
        oracle_cost=np.arange(n, dtype=float),
        oracle_solve_s=np.full(n, 0.01),
        oracle_loss=np.zeros(n),
        params={"trajectory": np.stack([t.trajectory for t in tasks])},
        meta={"note": "test"},
    ), tasks


def test_save_load_round_trip(tmp_path):
    path, tasks = _tiny_split(tmp_path / "tiny.npz")
    split = load_split(str(path))
    assert split.name == "tiny" and len(split) == 3
    assert split.tasks == tasks  # same polygons (unpadded) and trajectories
    assert split.tasks[1].name == "tiny/1" and split.tasks[1].seed == 1
    assert split.videos.dtype == np.uint8 and split.videos.shape[:2] == (3, 5)
    assert np.array_equal(split.params["trajectory"][2], tasks[2].trajectory)
    assert split.meta == {"note": "test"}
    assert available_splits(tmp_path) == ["tiny"]


def test_missing_split_says_how_to_make_it(tmp_path):
    with pytest.raises(DatasetError, match="generate_dataset.py"):
        load_split("nope", tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "version", "missing", "rows"])
def test_damaged_files_raise_a_clear_error_naming_the_file(tmp_path, damage):
    path, _ = _tiny_split(tmp_path / "bad.npz")
    if damage == "garbage":
        path.write_bytes(b"this is not a zip file at all")
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if damage == "version":
            arrays["format_version"] = np.array(FORMAT_VERSION + 41)
        elif damage == "missing":
            del arrays["video"]
        else:
            arrays["oracle_cost"] = arrays["oracle_cost"][:2]
        np.savez_compressed(path, **arrays)
    with pytest.raises(DatasetError, match="bad.npz"):
        load_split(str(path))


def test_shipped_splits_are_all_there_with_the_paper_sizes():
    assert available_splits() == list(SPLIT_NAMES)
    for name in SPLIT_NAMES:
        split = dlm_gym.load_split(name)
        n = SPLIT_SPECS[name].size
        T = split.tasks[0].horizon
        assert len(split) == n
        assert split.videos.shape == (n, T, 50, 50, 3)
        assert split.commands.shape == (n, T, 2, 4)
        assert np.all(np.isfinite(split.oracle_cost)) and np.all(split.oracle_loss >= 0)
        assert split.params["jacobian"].shape == (n, T, 3, 8)
        facets = {t.n_facets for t in split.tasks}
        if name.startswith("test"):
            assert facets == {12}
        elif not name.startswith("smooth"):
            assert facets <= {4, 5, 6}
        lo, hi = SEED_RANGES[name]
        assert all(lo <= t.seed < hi for t in split.tasks)


def test_seed_ranges_never_overlap():
    ranges = sorted(SEED_RANGES.values())
    assert all(lo < hi for lo, hi in ranges)
    assert all(a_hi <= b_lo for (_, a_hi), (b_lo, _) in zip(ranges, ranges[1:])), ranges
    assert seed_range_of(SEED_RANGES["corpus"][0]) == "corpus" and seed_range_of(-1) is None
    for name, spec in SPLIT_SPECS.items():
        assert seed_range_of(spec.seed) == name


def test_a_split_stops_at_the_end_of_its_seed_range(tmp_path, monkeypatch):
    import dlm_gym.datasets as datasets

    monkeypatch.setitem(datasets.SEED_RANGES, "train", (100_000, 100_003))
    with pytest.raises(RuntimeError, match="ran out of its seed range 'train'"):
        generate_split("train", dataclasses.replace(SPLIT_SPECS["train"], size=5), out_dir=tmp_path, progress=False)


def test_every_seed_gives_a_task():
    """12-facet seeds whose polygon took over 1,000 draws (2.3 % of them) used to raise; now they all sample."""
    task = sample_task(7_300_064, n_facets=12)
    assert task.n_facets == 12


def test_shipped_splits_are_reproducible_from_their_seeds():
    """The stored tasks and videos are exactly what the generator and renderer make from the stored seeds."""
    split = load_split("family")
    spec = SPLIT_SPECS["family"]
    renderer = Renderer()
    for i in (0, len(split) - 1):
        task = split.tasks[i]
        again = sample_task(task.seed, n_facets=spec.n_facets, shape=spec.shape)
        assert again == task
        assert np.array_equal(renderer.video(task.polygon, task.trajectory), split.videos[i])


def test_shipped_splits_do_not_share_tasks():
    seeds = [set(int(t.seed) for t in load_split(name).tasks) for name in SPLIT_NAMES]
    for i in range(len(seeds)):
        for j in range(i + 1, len(seeds)):
            assert not seeds[i] & seeds[j]


def test_env_plays_a_stored_task():
    env = VideoPlanarManipEnv()
    split = load_split("test")
    obs, info = env.reset(options={"split": "test", "index": 3})
    assert env.task == split.tasks[3]
    assert np.array_equal(obs["video"], split.videos[3])
    with pytest.raises(IndexError, match="out of range"):
        env.reset(options={"split": "test", "index": 40})
    env = VideoPlanarManipEnv(split="train")
    env.reset(seed=0)
    assert env.task.name.startswith("train/")


def test_stored_oracle_losses_replay_exactly():
    """The stored oracle plan, executed again by the scene, gives the stored loss (deterministic physics)."""
    from dlm_gym.metrics import object_trajectory_loss
    from dlm_gym.scene import Scene

    split = load_split("finetune")
    scene = Scene()
    for i in (0, 7):
        task = split.tasks[i]
        poses = scene.rollout(task.polygon, task.trajectory[0], as_executed(split.commands[i]))
        assert object_trajectory_loss(poses, task.trajectory) == split.oracle_loss[i]


def test_miqp_policy_replans_the_stored_labels_on_every_split():
    import policies

    policy = policies.make_policy("miqp")
    for name in SPLIT_NAMES:
        split = load_split(name)
        result = policies.rollout(policy, split.tasks[0])
        assert policy.last_plan.ok
        assert np.allclose(policy.last_plan.commands(), split.commands[0], atol=1e-6)
        assert result.loss == split.oracle_loss[0]  # the floor a table shows is what miqp scores


# ------------------------------------------------------------ Split as a sequence


def test_a_split_is_a_sequence_of_items(tmp_path):
    from dlm_gym.datasets import SplitItem

    path, tasks = _tiny_split(tmp_path / "seq.npz")
    split = load_split(str(path))
    item = split[1]
    assert isinstance(item, SplitItem)
    assert item.task == tasks[1] and item.task.name == "seq/1" and item.seed == 1
    assert np.array_equal(item.video, split.videos[1]) and item.video.dtype == np.uint8
    assert item.video.shape == split.videos.shape[1:] and item.commands.shape == split.commands.shape[1:]
    assert np.array_equal(item.params["trajectory"], split.params["trajectory"][1])
    assert item.oracle_loss == split.oracle_loss[1] and item.oracle_cost == split.oracle_cost[1] == 1.0
    assert split[-1].task == tasks[2] and split[np.int64(-3)].task == tasks[0]
    assert [it.task for it in split] == tasks and len(list(split)) == len(split) == 3
    assert [it.seed for it in reversed(split)] == [2, 1, 0]


def test_split_items_are_read_only_views():
    split = load_split("family")
    item = split[0]
    with pytest.raises(ValueError, match="read-only"):
        item.video[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        item.commands[0, 0, 0] = 1.0
    with pytest.raises(TypeError):
        item.params["jacobian"] = np.zeros(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.seed = 3
    assert np.shares_memory(item.video, split.videos)  # a view, no copy


@pytest.mark.parametrize("bad", [3, -4, 100])
def test_split_index_out_of_range_raises_index_error(tmp_path, bad):
    path, _ = _tiny_split(tmp_path / "small.npz")
    with pytest.raises(IndexError, match="'small' has 3 tasks; index -?[0-9]+ is out of range"):
        load_split(str(path))[bad]


@pytest.mark.parametrize("bad", [1.0, "0", True, None, (0,)])
def test_split_index_of_another_type_raises_type_error(bad):
    with pytest.raises(TypeError, match="integers or slices"):
        load_split("train")[bad]


def test_slicing_a_split_gives_a_split_of_views():
    split = load_split("family")
    part = split[5:11:2]
    assert type(part) is dlm_gym.datasets.Split and len(part) == 3
    assert part.name == "family" and part.meta == split.meta
    assert [t.name for t in part.tasks] == ["family/5", "family/7", "family/9"]
    assert np.array_equal(part.videos, split.videos[5:11:2]) and np.shares_memory(part.videos, split.videos)
    assert np.array_equal(part.params["jacobian"], split.params["jacobian"][5:11:2])
    assert np.array_equal(part.oracle_loss, split.oracle_loss[5:11:2])
    assert part[1].task == split[7].task
    assert len(split[100:]) == 0 and len(split[::-1]) == len(split)


def test_take_picks_tasks_by_index():
    split = load_split("train")
    picked = split.take([4, -1, 4])
    assert [t.name for t in picked.tasks] == ["train/4", "train/19", "train/4"]
    assert np.array_equal(picked.commands, split.commands[[4, 19, 4]])
    assert not np.shares_memory(picked.videos, split.videos)
    with pytest.raises(IndexError, match="out of range"):
        split.take([0, 20])
    with pytest.raises(TypeError, match="integers"):
        split.take([0.5])
    assert len(split.take([])) == 0


def test_the_columns_of_a_split_are_unchanged():
    """The sequence protocol adds to Split; every attribute other code reads is still there, as before."""
    split = load_split("test")
    assert len(split.tasks) == len(split) == 40 and split.name == "test"
    for name in ("videos", "commands", "oracle_cost", "oracle_solve_s", "oracle_loss"):
        assert len(getattr(split, name)) == 40
    assert set(split.params) >= {"jacobian", "trajectory"} and isinstance(split.meta, dict)
    assert [f.name for f in dataclasses.fields(split)] == [
        "name",
        "tasks",
        "videos",
        "commands",
        "oracle_cost",
        "oracle_solve_s",
        "oracle_loss",
        "params",
        "meta",
    ]
