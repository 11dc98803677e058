"""Bad input never crashes or passes silently (issue 11): tasks, actions, reset options, split files, checkpoints.

Each reproducer of the issue is a case here, plus bounded property-based
sweeps (hypothesis) over polygons, trajectories, actions and reset options.
The command-line cases are in ``test_cli_errors.py``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import policies
from dlm_gym import InvalidPolygonError, Task
from dlm_gym.actions import validate_action
from dlm_gym.datasets import DATA_DIR, DatasetError, add_checksum, array_checksum, load_split, save_split
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.geometry import circumradius, lowest_height, signed_area, validate_polygon
from dlm_gym.task import CIRCUMRADIUS_RANGE, VIEW
from policies import CheckpointError, CheckpointKindError
from policies.common.paths import CHECKPOINT_DIR
from policies.dlm.models import (
    NNNet,
    add_content_hash,
    content_hash,
    load_checkpoint,
    save_checkpoint,
)

SQUARE = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
HOVER = [[0.0, 0.5, 0.0]] * 5
FAST = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
"""Bounded sweeps: a few seconds in CI, no example database written into the checkout."""


# ------------------------------------------------------------------ polygons and trajectories
@pytest.mark.parametrize(
    "polygon, message",
    [
        ([(1e308, 0.0), (0.1, 0.0), (0.1, -0.1)], r"circumradius in \[0.02, 0.4\] m"),  # the OverflowError
        ([(-1e308, 1e308), (0.1, 0.0), (0.1, -0.1)], "coordinates reach"),
        (SQUARE * 100, r"circumradius is at least 10 m.*\[0.02, 0.4\]"),  # 20 m across: too large for the view
        (SQUARE * 0.01, r"circumradius 0.00141 m is outside .*\[0.02, 0.4\]"),  # 2 mm: a fraction of a pixel
        (SQUARE + 1j, "real numbers.*complex"),
        (SQUARE.astype(str), "real numbers"),
        (SQUARE > 0, "real numbers.*bool"),
        (None, "real numbers"),
        ([[0, 0], [1], [0, 1]], r"\(N, 2\) array"),
        ([[10**400, 0], [0, 0.1], [0.1, 0.1]], "too large"),
    ],
)
def test_bad_polygons_raise_invalid_polygon_error(polygon, message):
    with pytest.raises(InvalidPolygonError, match=message):
        Task(polygon, HOVER)


@pytest.mark.parametrize(
    "trajectory, message",
    [
        ([[5.0, 0.5, 0.0]] * 5, "leaves the camera view at keyframe 0"),
        (HOVER[:4] + [[0.0, 10.0, 0.0]], "leaves the camera view at keyframe 4"),
        ([[1e308, 0.5, 0.0]] * 5, "camera view"),
        (np.array(HOVER) + 1j, "real numbers.*complex"),
        (np.array(HOVER).astype(str), "real numbers"),
    ],
)
def test_bad_trajectories_raise_value_error(trajectory, message):
    with pytest.raises(ValueError, match=message):
        Task(SQUARE, trajectory)


def test_a_polygon_offset_out_of_view_is_refused():
    """The view is checked on the centroid frame: a polygon drawn 10 m away is out of the picture."""
    with pytest.raises(ValueError, match="camera view"):
        Task(SQUARE + 10.0, HOVER)


coordinates = st.one_of(
    st.floats(-0.5, 0.5),  # mostly plausible shapes ...
    st.floats(allow_nan=True, allow_infinity=True),  # ... and anything a float can be
)


@FAST
@given(arrays(np.float64, st.tuples(st.integers(0, 7), st.integers(1, 3)), elements=coordinates))
def test_any_polygon_is_a_task_or_an_invalid_polygon_error(polygon):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow along the way either
        try:
            task = Task(polygon, HOVER)
        except InvalidPolygonError:
            return
        except ValueError as exc:  # a valid polygon far from its origin leaves the view once re-centred
            assert "camera view" in str(exc)
            return
    lo, hi = CIRCUMRADIUS_RANGE
    assert lo <= circumradius(task.polygon) <= hi
    assert signed_area(task.polygon) > 0
    assert np.allclose(validate_polygon(task.polygon), task.polygon)


@FAST
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 7), st.integers(2, 4)),
        elements=st.one_of(st.floats(-0.5, 0.8), st.floats(allow_nan=True, allow_infinity=True)),
    )
)
def test_any_trajectory_is_a_task_or_a_value_error(trajectory):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            task = Task(SQUARE, trajectory)
        except InvalidPolygonError:  # pragma: no cover - the square is valid
            raise
        except ValueError:
            return
    (x0, x1), (y0, y1) = VIEW
    assert np.all((task.trajectory[:, 0] >= x0) & (task.trajectory[:, 0] <= x1))
    assert np.all((task.trajectory[:, 1] >= y0) & (task.trajectory[:, 1] <= y1))
    assert lowest_height(task.polygon, task.trajectory).min() >= -1e-6


# ------------------------------------------------------------------ actions
REAL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "longdouble"]  # fmt: skip
OTHER_DTYPES = ["bool", "complex64", "complex128", "U3", "S3", "object", "datetime64[s]", "timedelta64[s]"]


@pytest.fixture(scope="module")
def env():
    return VideoPlanarManipEnv()


@pytest.mark.parametrize(
    "action",
    [
        np.full((2, 4), 0.5 + 0j),  # was accepted with only a ComplexWarning
        np.full((2, 4), 0.5 + 1j),
        np.ones((2, 4), bool),
        np.full((2, 4), "0.5"),
        np.full((2, 4), 0.5, dtype=object),
        [["0.5"] * 4] * 2,
        [[True] * 4] * 2,
        None,
    ],
    ids=["complex", "complex-imag", "bool", "string", "object", "str-list", "bool-list", "none"],
)
def test_step_refuses_actions_that_are_not_real_numbers(env, action):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"real numeric array \(int or float dtype\) of shape \(2, 4\), got dtype"):
        env.step(action)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_step_accepts_ints_and_floats_of_any_width(env, dtype):
    env.reset(seed=0)
    env.step(np.zeros((2, 4), dtype))
    env.step(np.ones((2, 4), dtype).tolist())


@FAST
@given(st.sampled_from(REAL_DTYPES + OTHER_DTYPES), st.integers(-3, 3))
def test_validate_action_accepts_exactly_the_real_dtypes(dtype, value):
    action = np.full((2, 4), value).astype(dtype)
    if dtype in REAL_DTYPES:
        out = validate_action(action)
        assert out.dtype == np.float64 and np.all(np.abs(out) <= 1.0)
    else:
        with pytest.raises(ValueError, match="real numeric array"):
            validate_action(action)


# ------------------------------------------------------------------ reset options
TRAIN_SIZE = len(load_split("train"))


def _int_like(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"split": 3}, TypeError, r"options\['split'\] must be a split name"),  # was AttributeError
        ({"split": ["train"]}, TypeError, r"options\['split'\]"),
        ({"split": "train", "index": 2.7}, TypeError, r"options\['index'\] must be an integer, got float 2.7"),  # was 2
        ({"split": "train", "index": 2.0}, TypeError, r"options\['index'\] must be an integer"),
        ({"split": "train", "index": True}, TypeError, "got bool"),
        ({"split": "train", "index": "2"}, TypeError, "got str"),
        ({"split": "train", "index": -1}, IndexError, "out of range"),
        ({"split": "nope"}, DatasetError, "nope.npz"),
    ],
)
def test_bad_reset_options_raise_a_clear_error(env, options, error, message):
    with pytest.raises(error, match=message):
        env.reset(options=options)


def test_reset_options_must_be_a_dict(env):
    with pytest.raises(TypeError, match="options must be a dict"):
        env.reset(options=[("split", "train")])


@pytest.mark.parametrize("index", [np.int64(2), np.int32(2), np.uint8(2), np.array(2), 2])
def test_numpy_integer_indices_play_that_task(env, index):
    env.reset(options={"split": "train", "index": index})
    assert env.task == load_split("train").tasks[2]


@settings(max_examples=30, deadline=None, database=None)
@given(
    st.one_of(
        st.integers(-30, 30),
        st.integers(-30, 30).map(np.int64),
        st.integers(0, 30).map(np.uint16),
        st.floats(),
        st.floats().map(np.float64),
        st.booleans(),
        st.text(max_size=2),
        st.none(),
    )
)
def test_any_index_plays_its_task_or_raises(env, index):
    options = {"split": "train", "index": index}
    if _int_like(index) and 0 <= index < TRAIN_SIZE:
        env.reset(options=options)
        assert env.task.name == f"train/{int(index)}"
    elif _int_like(index):
        with pytest.raises(IndexError, match="out of range"):
            env.reset(options=options)
    else:
        with pytest.raises(TypeError, match=r"options\['index'\] must be an integer"):
            env.reset(options=options)


@settings(max_examples=20, deadline=None, database=None)
@given(
    st.one_of(
        st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2), st.binary(max_size=3)
    )
)
def test_any_non_string_split_is_a_type_error(env, split):
    with pytest.raises(TypeError, match=r"options\['split'\]"):
        env.reset(options={"split": split})


# ------------------------------------------------------------------ split files
@pytest.fixture(scope="module")
def train_arrays() -> dict[str, np.ndarray]:
    with np.load(DATA_DIR / "train.npz") as npz:
        arrays_ = {k: npz[k] for k in npz.files}
    arrays_.pop("checksum", None)
    return arrays_


def _write(path: Path, arrays_: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **arrays_)
    return path


def _nan_first(a):
    a = a.astype(np.float64)
    a.flat[0] = np.nan
    return a


def _zero_tasks(a):
    return {k: (v if k in ("format_version", "meta") else v[:0]) for k, v in a.items()}


def _set(key, fn):
    return lambda a: {**a, key: fn(a[key])}


SPLIT_DAMAGE = {
    # the reproducers
    "format_version_str": (_set("format_version", lambda x: np.array("one")), "format_version.*scalar integer"),
    "format_version_shape": (_set("format_version", lambda x: np.array([1, 1])), "format_version.*shape \\(2,\\)"),
    "format_version_float": (_set("format_version", lambda x: np.array(1.5)), "format_version.*float64"),
    "trajectory_T4": (
        _set("trajectory", lambda x: x[:, :4]),
        r"'trajectory' has shape \(20, 4, 3\), expected \(20, 5, 3\)",
    ),
    "video_float": (_set("video", lambda x: x.astype(np.float32)), "'video' has dtype float32, expected uint8"),
    "video_nan": (_set("video", _nan_first), "'video' has dtype float64, expected uint8"),
    "video_10x10": (_set("video", lambda x: x[:, :, :10, :10]), r"'video' has shape .*expected \(20, 5, 50, 50, 3\)"),
    "video_T3": (_set("video", lambda x: x[:, :3]), r"'video' has shape \(20, 3, 50, 50, 3\)"),
    "commands_nan": (_set("commands", _nan_first), "'commands' has NaN or inf"),
    "commands_shape": (_set("commands", lambda x: x[..., :3]), r"'commands' has shape .*expected \(20, 5, 2, 4\)"),
    "oracle_loss_nan": (_set("oracle_loss", _nan_first), "'oracle_loss' has NaN or inf"),
    "param_nan": (_set("param/jacobian", _nan_first), "'param/jacobian' has NaN or inf"),
    "param_wrong_T": (_set("param/jacobian", lambda x: x[:, :3]), r"'param/jacobian' has shape \(20, 3, 3, 8\)"),
    "meta_list": (_set("meta", lambda x: np.array("[1, 2]")), "'meta' must be a JSON object, got a JSON list"),
    "zero_tasks": (_zero_tasks, "no tasks"),
    "n_vertices_minus1": (
        _set("n_vertices", lambda x: np.full_like(x, -1)),
        "'n_vertices' is -1 for task 0, expected 3 to 6",
    ),
    # and their neighbours
    "oracle_cost_nan": (_set("oracle_cost", _nan_first), "'oracle_cost' has NaN or inf"),
    "oracle_solve_s_inf": (
        _set("oracle_solve_s", lambda x: np.full_like(x, np.inf)),
        "'oracle_solve_s' has NaN or inf",
    ),
    "oracle_loss_negative": (_set("oracle_loss", lambda x: -np.ones_like(x)), "'oracle_loss' has a negative entry"),
    "polygon_nan": (_set("polygon", _nan_first), "'polygon' has NaN or inf"),
    "n_vertices_too_many": (_set("n_vertices", lambda x: np.full_like(x, 7)), "'n_vertices' is 7 .*expected 3 to 6"),
    "n_vertices_float": (_set("n_vertices", lambda x: x + 0.5), "'n_vertices' has dtype float64, expected integers"),
    "seed_float": (_set("seed", lambda x: x * 1.0), "'seed' has dtype float64, expected integers"),
    "three_fingers": (_set("commands", lambda x: np.concatenate([x, x[:, :, :1]], 2)), r"N=2 fingers"),
    "meta_not_json": (_set("meta", lambda x: np.array("{oops")), "'meta' is not valid JSON"),
    "rows_differ": (_set("oracle_cost", lambda x: x[:5]), r"'oracle_cost' has shape \(5,\), expected \(20,\)"),
    "missing_video": (lambda a: {k: v for k, v in a.items() if k != "video"}, r"missing array\(s\) \['video'\]"),
    "polygon_out_of_scene": (_set("polygon", lambda x: x * 50), "task 0 .*circumradius"),
}


@pytest.mark.parametrize("damage", sorted(SPLIT_DAMAGE))
def test_damaged_split_content_raises_dataset_error_naming_file_and_array(tmp_path, train_arrays, damage):
    mutate, message = SPLIT_DAMAGE[damage]
    path = _write(tmp_path / f"{damage}.npz", mutate(dict(train_arrays)))
    with pytest.raises(DatasetError, match=message) as err:
        load_split(str(path))
    assert f"{damage}.npz" in str(err.value)


@pytest.mark.parametrize("kind", ["npy", "empty", "garbage", "pickle", "directory"])
def test_unreadable_split_files_raise_dataset_error(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    if kind == "npy":
        np.save(tmp_path / "a.npy", np.zeros(3))
        (tmp_path / "a.npy").rename(path)  # was TypeError
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"garbage" * 10)
    elif kind == "pickle":
        np.savez(path, video=np.array([object()], dtype=object))
    else:
        path.mkdir()
    with pytest.raises(DatasetError, match=f"{kind}.npz"):
        load_split(str(path))


def test_load_split_refuses_a_non_string_name():
    with pytest.raises(TypeError, match="a split is a name"):
        load_split(3)


def _small_split(path: Path, n: int = 3) -> Path:
    src = load_split("train")
    return save_split(
        path,
        src.tasks[:n],
        src.videos[:n],
        src.commands[:n],
        src.oracle_cost[:n],
        src.oracle_solve_s[:n],
        src.oracle_loss[:n],
        {k: v[:n] for k, v in src.params.items()},
        {"note": "test"},
    )


def test_saved_splits_carry_a_checksum_that_catches_edits(tmp_path):
    path = _small_split(tmp_path / "small.npz")
    with np.load(path) as npz:
        stored = {k: npz[k] for k in npz.files}
    assert str(stored["checksum"]) == array_checksum(stored)
    assert len(load_split(str(path))) == 3
    # a valid-looking edit (the zip CRCs are fine) with the old checksum kept
    stored["commands"] = stored["commands"] + 1e-9
    _write(tmp_path / "edited.npz", stored)
    with pytest.raises(DatasetError, match="edited.npz: checksum mismatch"):
        load_split(str(tmp_path / "edited.npz"))
    assert not [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_every_flipped_byte_of_a_split_is_caught_or_harmless(tmp_path):
    """A flip is caught (DatasetError) unless it hit zip metadata such as a timestamp: then the data is intact."""
    path = _small_split(tmp_path / "small.npz")
    blob = path.read_bytes()
    with np.load(path) as npz:
        original = {k: npz[k] for k in npz.files}
    caught = 0
    for i, pos in enumerate(np.random.default_rng(0).integers(0, len(blob), 40)):
        damaged = bytearray(blob)
        damaged[pos] ^= 0xFF
        flipped = tmp_path / f"flip_{i}.npz"
        flipped.write_bytes(bytes(damaged))
        try:
            split = load_split(str(flipped))
        except DatasetError as exc:
            assert flipped.name in str(exc)
            caught += 1
            continue
        with np.load(flipped) as npz:
            assert all(np.array_equal(npz[k], original[k]) for k in original), f"flip at {pos} changed the data"
        assert len(split) == 3
    assert caught >= 30


def test_files_without_a_checksum_load_and_add_checksum_adds_one(tmp_path, train_arrays):
    path = _write(tmp_path / "old.npz", train_arrays)  # as the files shipped before checksums
    before = load_split(str(path))
    add_checksum(path)
    with np.load(path) as npz:
        assert "checksum" in npz.files
        assert all(np.array_equal(npz[k], v) for k, v in train_arrays.items())
    assert load_split(str(path)).tasks == before.tasks
    broken = _write(tmp_path / "broken.npz", _set("commands", _nan_first)(dict(train_arrays)))
    with pytest.raises(DatasetError, match="commands"):
        add_checksum(broken)  # never vouches for a damaged file


def test_save_split_refuses_content_that_would_not_load(tmp_path):
    src = load_split("train")
    commands = src.commands[:2].copy()
    commands[0, 0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="'commands' has NaN"):
        save_split(
            tmp_path / "bad.npz",
            src.tasks[:2],
            src.videos[:2],
            commands,
            src.oracle_cost[:2],
            src.oracle_solve_s[:2],
            src.oracle_loss[:2],
            {},
            {},
        )
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_save_leaves_the_old_split_intact(tmp_path, monkeypatch):
    path = _small_split(tmp_path / "small.npz")
    blob = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _small_split(path, n=2)
    assert path.read_bytes() == blob
    assert [p.name for p in tmp_path.iterdir()] == ["small.npz"]


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def tiny_nn(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt") / "nn_tiny.pt"
    return save_checkpoint(
        NNNet(latent_dim=8, lstm_layers=1).eval(),
        out,
        policy="nn",
        command=f"python examples/train.py --policy nn --out {out}",
    )


def _first_weight(payload) -> str:
    return next(k for k, v in payload["state_dict"].items() if v.is_floating_point())


def _without_hash(fn):
    def mutate(p):
        p.pop("content_hash")
        fn(p)

    return mutate


def _set_weight(value_fn):
    def mutate(p):
        key = _first_weight(p)
        p["state_dict"][key] = value_fn(p["state_dict"][key])

    return mutate


CHECKPOINT_DAMAGE = {
    # the reproducers
    "missing_hparams": (lambda p: p.pop("hparams"), "'hparams' must be a dict"),  # was KeyError
    "latent_dim_str": (
        lambda p: p["hparams"].update(latent_dim="75"),
        r"hparams\['latent_dim'\] must be a positive integer",
    ),
    "latent_dim_negative": (lambda p: p["hparams"].update(latent_dim=-1), r"hparams\['latent_dim'\]"),
    "lstm_layers_float": (lambda p: p["hparams"].update(lstm_layers=1.5), r"hparams\['lstm_layers'\]"),
    "lstm_layers_zero": (lambda p: p["hparams"].update(lstm_layers=0), r"hparams\['lstm_layers'\]"),
    "state_dict_list": (
        lambda p: p.update(state_dict=[1, 2]),
        "'state_dict' must map names to tensors",
    ),  # was TypeError
    # and their neighbours
    "hparams_extra_key": (lambda p: p["hparams"].update(width=3), "'hparams' has keys"),
    "lstm_layers_bool": (lambda p: p["hparams"].update(lstm_layers=True), r"hparams\['lstm_layers'\]"),
    "version": (lambda p: p.update(version=99), "checkpoint version 99"),
    "policy_kind_mismatch": (lambda p: p.update(policy="dlm"), "policy 'dlm' in a 'nn' network"),
    "weights_edited": (_set_weight(lambda w: w + 1e-6), "content hash mismatch"),
    "weights_nan_no_hash": (_without_hash(_set_weight(lambda w: torch.full_like(w, float("nan")))), "NaN or inf"),
    "weights_wrong_shape_no_hash": (_without_hash(_set_weight(lambda w: torch.zeros(1))), "do not fit the model"),
    "weights_missing_no_hash": (_without_hash(lambda p: p["state_dict"].pop(_first_weight(p))), "do not fit the model"),
}


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_payload_raises_checkpoint_error(tmp_path, tiny_nn, damage):
    mutate, message = CHECKPOINT_DAMAGE[damage]
    payload = torch.load(tiny_nn, weights_only=True)
    payload["state_dict"], payload["hparams"] = dict(payload["state_dict"]), dict(payload["hparams"])
    mutate(payload)
    path = tmp_path / f"{damage}.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert f"{damage}.pt" in str(err.value) and "python examples/train.py --policy nn" in str(err.value)


def test_every_flipped_byte_of_a_checkpoint_is_caught_or_harmless(tmp_path, tiny_nn):
    blob = tiny_nn.read_bytes()
    reference = torch.load(tiny_nn, weights_only=True)["state_dict"]
    caught = 0
    for i, pos in enumerate(np.random.default_rng(1).integers(0, len(blob), 40)):
        damaged = bytearray(blob)
        damaged[pos] ^= 0xFF
        path = tmp_path / f"flip_{i}.pt"
        path.write_bytes(bytes(damaged))
        try:
            model, _ = load_checkpoint(path)
        except CheckpointError as exc:
            assert path.name in str(exc) and "examples/train.py" in str(exc)
            caught += 1
            continue
        state = model.state_dict()
        assert all(torch.equal(state[k], reference[k]) for k in reference), f"flip at {pos} changed the weights"
    assert caught >= 30


def test_checkpoints_without_a_hash_load_and_add_content_hash_adds_one(tmp_path, tiny_nn):
    payload = torch.load(tiny_nn, weights_only=True)
    stored = payload.pop("content_hash")
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    load_checkpoint(old)  # the check is skipped, everything else is checked
    add_content_hash(old)
    again = torch.load(old, weights_only=True)
    assert again["content_hash"] == stored == content_hash(payload["state_dict"])
    assert all(torch.equal(again["state_dict"][k], v) for k, v in payload["state_dict"].items())
    assert [p.name for p in tmp_path.iterdir()] == ["old.pt"]  # written atomically, nothing left behind


@pytest.mark.parametrize("name", ["dlm", "dlm_paper", "cvx", "mdr"])
def test_a_checkpoint_of_another_kind_is_refused(tiny_nn, name):
    with pytest.raises(CheckpointKindError, match="holds a 'nn' model") as err:
        policies.make_policy(name, checkpoint=tiny_nn)
    script = "train.py" if name.endswith("_paper") else "train_large.py"  # the large-data DLM has its own
    assert isinstance(err.value, policies.CheckpointError) and f"python examples/{script}" in str(err.value)


def test_missing_and_truncated_checkpoints_name_the_rebuild_command(tmp_path, tiny_nn):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist; rebuild it with `python examples/train.py"):
        load_checkpoint(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_nn.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pt is corrupt.*python examples/train.py"):
        load_checkpoint(cut)


# ------------------------------------------------------------------ PPO
def test_the_zoo_has_one_checkpoint_error():
    from policies.rl import ppo

    assert policies.CheckpointError is CheckpointError is ppo.CheckpointError


PPO_ZIP = CHECKPOINT_DIR / "ppo_scratch.zip"


def _ppo_data() -> dict:
    with zipfile.ZipFile(PPO_ZIP) as archive:
        return json.loads(archive.read("data"))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"[1, 2]", "'data' entry must be a JSON object, got a JSON list"),  # was AttributeError
        (b'"text"', "JSON object, got a JSON str"),
        (b"{}", r"data\['policy_class'\] must be an SB3-serialized object"),
        ("observation_space", r"data\['observation_space'\] must be an SB3-serialized object"),
        ("n_envs", r"data\['n_envs'\] must be an integer >= 1"),
        ("gamma", r"data\['gamma'\] must be a finite number"),
        (b"\xff\xfe", "corrupt or not an SB3 zip"),
    ],
)
def test_malformed_ppo_data_raises_checkpoint_error(tmp_path, data, message):
    if isinstance(data, str):  # one entry replaced by a wrong JSON value
        data = json.dumps({**_ppo_data(), data: "nonsense"}).encode()
    path = tmp_path / "bad_data.zip"
    with zipfile.ZipFile(PPO_ZIP) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, data if item.filename == "data" else src.read(item.filename))
    from policies.rl import ppo

    with pytest.raises(CheckpointError, match=message) as err:
        ppo.load_ppo_model(path)
    assert "bad_data.zip" in str(err.value) and "examples/train.py --policy ppo_scratch" in str(err.value)


# ------------------------------------------------------------------ training logs
def test_an_interrupted_training_run_keeps_the_previous_log(tmp_path, monkeypatch):
    import policies.dlm.trainer as train_learned

    out = tmp_path / "mdr.pt"
    log = tmp_path / "mdr_log.csv"
    log.write_text("stage,iteration\nL_P,1000\n")
    out.write_bytes(b"the previous checkpoint")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_learned, "train_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        config = dataclasses.replace(
            train_learned.DEFAULT, policy="mdr", out=str(out), iterations=1, latent_dim=8, lstm_layers=1, threads=1
        )
        train_learned.train_policy(config, progress=False)
    assert log.read_text() == "stage,iteration\nL_P,1000\n"
    assert out.read_bytes() == b"the previous checkpoint"
    assert (tmp_path / "mdr_log.csv.partial").exists()  # the interrupted curve, kept aside for a look


def test_an_interrupted_ppo_run_keeps_the_previous_log_and_checkpoint(tmp_path, monkeypatch):
    from policies.rl import ppo
    from policies.rl.callbacks import LearningCurveCallback

    out, log = tmp_path / "ppo.zip", tmp_path / "ppo_log.csv"
    out.write_bytes(b"the previous checkpoint")
    log.write_text("timesteps\n196608\n")

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(LearningCurveCallback, "_on_rollout_end", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ppo.train_ppo(
            64,
            out_path=out,
            n_envs=1,
            hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
            n_val_tasks=0,
            progress=False,
        )
    assert log.read_text() == "timesteps\n196608\n"
    assert out.read_bytes() == b"the previous checkpoint"
