"""The localising encoder (KeypointEncoder, PoseHead, SpatialSoftArgmax) and examples/encoder_study.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dlm_gym.config import DEFAULT_CONFIG
from policies.dlm.networks import (
    KeypointEncoder,
    PoseHead,
    SpatialSoftArgmax,
    pixel_centres_world,
    video_to_tensor,
)
from policies.oracle.derender import _pixel_to_world


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pixel_centres_follow_the_renderers_convention():
    S = DEFAULT_CONFIG.frame_size
    grid = pixel_centres_world(S).double().numpy()
    rows, cols = np.indices((S, S))
    np.testing.assert_allclose(grid, _pixel_to_world(rows, cols, DEFAULT_CONFIG), atol=1e-6)
    # a half-resolution cell is centred on the 2 x 2 block of frame pixels it covers
    half = pixel_centres_world(S // 2).double().numpy()
    np.testing.assert_allclose(half[3, 7], _pixel_to_world(6.5, 14.5, DEFAULT_CONFIG), atol=1e-6)


@pytest.mark.parametrize("side", [25, 50])
def test_soft_argmax_finds_a_single_bright_pixel(side):
    ssa = SpatialSoftArgmax(keypoints=3, side=side, temperature=0.01)
    heat = torch.zeros(1, 3, side, side)
    where = [(0, 0), (7, 19), (side - 1, side // 2)]
    for k, (r, c) in enumerate(where):
        heat[0, k, r, c] = 1.0
    points, attention = ssa(heat)
    assert points.shape == (1, 3, 2) and attention.shape == (1, 3, side * side)
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, 3))
    cell = (DEFAULT_CONFIG.view_x[1] - DEFAULT_CONFIG.view_x[0]) / side
    rows, cols = np.array(where).T
    scale = DEFAULT_CONFIG.frame_size // side  # frame pixels per cell: a cell is centred on its scale x scale block
    offset = (scale - 1) / 2
    expect = _pixel_to_world(rows * scale + offset, cols * scale + offset, DEFAULT_CONFIG)
    err = np.abs(points[0].detach().double().numpy() - expect).max()
    assert err < 0.01 * cell  # a hundredth of a cell


def test_spread_is_the_covariance_of_the_attention():
    side = 25
    ssa = SpatialSoftArgmax(keypoints=2, side=side)
    heat = torch.randn(3, 2, side, side) * 3
    points, attention = ssa(heat)
    d = ssa.grid.double()[None, None] - points.double()[:, :, None]
    a = attention.double()[..., None]
    expect = torch.stack([(a[..., 0] * d[..., 0] ** 2).sum(-1), (a[..., 0] * d[..., 0] * d[..., 1]).sum(-1),
                          (a[..., 0] * d[..., 1] ** 2).sum(-1)], -1)  # fmt: skip
    torch.testing.assert_close(ssa.spread(attention, points).double(), expect, atol=1e-6, rtol=1e-4)


def test_soft_argmax_is_sub_pixel():
    """A bright spot between pixels (split over two cells as log-intensities) is found between them."""
    side = 25
    ssa = SpatialSoftArgmax(keypoints=1, side=side, temperature=1.0)
    heat = torch.full((1, 1, side, side), -30.0)
    frac = 0.3  # 30 % of the way from column 10 to column 11, on row 12
    heat[0, 0, 12, 10], heat[0, 0, 12, 11] = math.log(1 - frac), math.log(frac)
    points, _ = ssa(heat)
    grid = pixel_centres_world(side)
    expect = (1 - frac) * grid[12, 10] + frac * grid[12, 11]
    cell = 0.8 / side
    assert (points[0, 0] - expect).abs().max() < 1e-3 * cell


def test_keypoint_encoder_and_pose_head_shapes():
    B, T, K, C = 2, DEFAULT_CONFIG.horizon, 6, 8
    enc, head = KeypointEncoder(keypoints=K, channels=C, depth=2), PoseHead(K, C, hidden=16)
    video = torch.rand(B, T, 3, 50, 50)
    out = enc(video)
    assert out["keypoints"].shape == (B, T, K, 2)
    assert out["keypoint_features"].shape == (B, T, K, C)
    assert out["attention"].shape == (B, T, K, 25, 25)
    assert out["keypoint_spread"].shape == (B, T, K, 3)
    assert out["features"].shape == (B, T, enc.frame_features) and enc.frame_features == K * (5 + C)
    torch.testing.assert_close(out["attention"].sum((-1, -2)), torch.ones(B, T, K))
    (x0, x1), (y0, y1) = DEFAULT_CONFIG.view_x, DEFAULT_CONFIG.view_y
    kp = out["keypoints"]
    assert ((kp[..., 0] >= x0) & (kp[..., 0] <= x1) & (kp[..., 1] >= y0) & (kp[..., 1] <= y1)).all()
    pose = head(out)
    assert pose["position"].shape == (B, T, 2) and pose["rotation"].shape == (B, T, 2)
    assert pose["angle"].shape == (B, T)
    torch.testing.assert_close(pose["rotation"].norm(dim=-1), torch.ones(B, T))
    torch.testing.assert_close(pose["rotation"][:, 0], torch.tensor([[0.0, 1.0]]).expand(B, 2))
    with pytest.raises(ValueError, match="video must be"):
        enc(torch.rand(B, T, 3, 40, 40))


@pytest.mark.parametrize("collapsed", [False, True])
def test_pose_head_reads_a_rigid_motion_of_the_keypoints_exactly(collapsed):
    """Keypoints and spreads that turn with the object: the head (at its initialisation) gives the anchor and the
    exact relative angle, from both estimates, or from the spreads alone when every keypoint sits on the anchor."""
    K, C, T = 5, 4, 4
    head = PoseHead(K, C, hidden=8)
    rng = np.random.default_rng(0)
    body = torch.tensor(rng.normal(0, 0.05, (K, 2)), dtype=torch.float32) * (0.0 if collapsed else 1.0)
    body -= body.mean(0)  # the anchor starts as the keypoints' mean
    angles = torch.tensor([0.3, 0.5, -0.2, 1.4])  # relative to the first: within +-90 degrees
    shift = torch.tensor(rng.uniform(-0.2, 0.2, (T, 2)), dtype=torch.float32)
    R = torch.stack([torch.cos(angles), -torch.sin(angles), torch.sin(angles), torch.cos(angles)], -1).reshape(T, 2, 2)
    points = torch.einsum("tij,kj->tki", R, body) + shift[:, None]
    L = torch.tensor(rng.normal(0, 0.05, (K, 2, 2)), dtype=torch.float32)
    cov = torch.einsum("tij,kjl,tml->tkim", R, L @ L.transpose(1, 2), R)  # R S R^T, per keypoint
    spread = torch.stack([cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]], -1)
    encoded = {"keypoints": points[None], "keypoint_features": torch.rand(1, T, K, C), "keypoint_spread": spread[None]}
    out = head(encoded)
    torch.testing.assert_close(out["position"][0], shift, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["angle"][0], angles - angles[0], atol=1e-4, rtol=0)


def test_gradients_flow_to_every_parameter_and_the_video():
    torch.manual_seed(0)
    enc, head = KeypointEncoder(keypoints=4, channels=6), PoseHead(4, 6, hidden=8)
    video = torch.rand(3, DEFAULT_CONFIG.horizon, 3, 50, 50, requires_grad=True)
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=1e-3)
    for _ in range(2):  # the MLPs' last layers start at zero: their inner layers get gradients from step 2 on
        opt.zero_grad()
        pose = head(enc(video))
        loss = (pose["position"] - 0.1).pow(2).sum() + (pose["rotation"][:, 1:, 0] - 0.2).pow(2).sum()
        loss.backward()
        opt.step()
    for name, p in [*enc.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert video.grad is not None and video.grad.abs().sum() > 0


def test_video_to_tensor_feeds_the_encoder():
    video = np.random.default_rng(0).integers(0, 256, (2, DEFAULT_CONFIG.horizon, 50, 50, 3), dtype=np.uint8)
    out = KeypointEncoder(keypoints=2, channels=4)(video_to_tensor(video))
    assert out["keypoints"].shape == (2, DEFAULT_CONFIG.horizon, 2, 2)


# ------------------------------------------------------------------ the study script
@pytest.fixture(scope="module")
def study(load_example):
    """examples/encoder_study.py as a module (a script, not a package), loaded once."""
    return load_example("encoder_study")


@pytest.fixture(scope="module")
def tiny_data(make_tiny_corpus):
    root = make_tiny_corpus("encoder_study", 6, 3, 990_000)
    return root / "corpus", root / "val.npz"


def test_study_runs_end_to_end(tiny_data, tmp_path, study, capsys):
    from policies.common.curves import read_curve

    corpus, val = tiny_data
    out = tmp_path / "out"
    args = ["--corpus", str(corpus), "--val", str(val), "--out", str(out), "--max-steps", "3", "--batch-size", "4"]
    args += ["--train-seconds", "30", "--eval-every", "1000", "--log-every", "2", "--moments-tasks", "1"]
    args += ["--keypoints", "4", "--channels", "6"]
    assert study.main(args) == 0
    table = capsys.readouterr().out
    for name in ("paper", "keypoint"):
        summary = json.loads((out / f"{name}_summary.json").read_text())
        assert summary["steps"] == 3 and summary["train_tasks"] == 6
        assert "load_corpus" in summary["train_source"]
        metrics = summary["validation"]["val"]
        assert all(math.isfinite(v) and v >= 0 for v in metrics.values())
        assert summary["forward_ms_per_datapoint_b32"] > 0 and summary["params"] > 0
        rows = read_curve(out / f"{name}_curve.csv")
        assert [r["stage"] for r in rows] == ["L_P", "L_P"] and [r["step"] for r in rows] == ["2", "3"]
        assert (out / f"{name}_val.csv").read_text().count("\n") == 3  # header, start, end
        assert (out / f"{name}.pt").is_file()
        assert f"| {name} | val (3) | 6 | 3 |" in table
    moments = json.loads((out / "moments_summary.json").read_text())
    assert moments["validation_tasks"]["val"] == {"tasks": 1, "failed": 0}
    assert "| moments | val (1 of 1) |" in table
    # the saved models load again and are timed in turns
    assert study.main([*args, "--bench"]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert set(bench["forward_ms_per_datapoint"]) == {"paper", "keypoint"} and bench["batch"] == 32
    assert study.main([*args, "--bench", "--out", str(tmp_path / "empty")]) == 2
    assert "no trained paper model" in capsys.readouterr().err


def test_study_trains_on_the_complete_shards_of_an_unfinished_corpus(tiny_data, tmp_path, study):
    import shutil

    corpus, val = tiny_data
    partial = tmp_path / "partial"
    shutil.copytree(corpus, partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["complete"], manifest["shards"][1] = False, None
    (partial / "manifest.json").write_text(json.dumps(manifest))
    (partial / "shard-00001.npz").unlink()
    data = study.TrainingData(partial)
    assert data.n_tasks == 3 and "incomplete corpus (1 of 2)" in data.source
    videos, trajectories = next(data.batches(2, seed=0))
    assert videos.shape == (2, DEFAULT_CONFIG.horizon, 50, 50, 3) and trajectories.shape == (
        2,
        DEFAULT_CONFIG.horizon,
        3,
    )


def test_targets_are_rotations_relative_to_the_first_keyframe(study):
    traj = np.array([[[0.0, 0.1, 3.0], [0.0, 0.1, -3.0], [0.1, 0.2, 3.5]]])
    pos, rel = study.pose_targets(traj)
    np.testing.assert_allclose(pos, traj[..., :2])
    np.testing.assert_allclose(rel, [[0.0, 2 * math.pi - 6.0, 0.5]], atol=1e-12)
    assert study.wrap_angle(np.array([math.pi, -math.pi]))[1] == pytest.approx(math.pi)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "lstm"], "unknown model lstm"),
        (["--val", "/nonexistent.npz"], "no file /nonexistent.npz"),
        (["--batch-size", "0"], "expected a positive integer"),
        (["--final-lr-fraction", "2"], "--final-lr-fraction must be in"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, study, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        study.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_shipped_splits_are_refused(study, capsys, tmp_path):
    from dlm_gym.datasets import split_path

    with pytest.raises(SystemExit):
        study.main(["--val", str(split_path("family")), "--out", str(tmp_path)])
    assert "shipped split" in capsys.readouterr().err
