"""The large-data DLM: contact-mode classification, the oracle on proposed pairs, KeypointDLM, train_large.py."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from dlm_gym.actions import command_bounds, noop_commands
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.oracle import contact_candidates, keyframe_data, solve_oracle
from dlm_gym.task import Task
from policies.dlm.contact_mode import (
    ContactModeNet,
    candidate_feature_dim,
    context_feature_dim,
    mode_features,
    pair_index,
    soft_pair_target,
)
from policies.dlm.keypoint_dlm import KeypointDLM
from policies.dlm.models import load_checkpoint, save_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def lifted_square():
    """A 12 cm square lifted 3 cm and turned 10 degrees: fingers on its sides are needed."""
    poly = np.array([[-0.06, -0.06], [0.06, -0.06], [0.06, 0.06], [-0.06, 0.06]])
    T = DEFAULT_CONFIG.horizon
    traj = np.column_stack([np.full(T, 0.0), 0.06 + np.linspace(0, 0.03, T), np.linspace(0, np.deg2rad(10), T)])
    return Task(poly, traj)


def test_pair_index_is_the_combinations_order():
    assert pair_index(5).tolist() == [list(c) for c in itertools.combinations(range(5), 2)]
    assert len(pair_index(72)) == 72 * 71 // 2


def test_features_have_the_documented_sizes(lifted_square):
    cands = contact_candidates(lifted_square)
    cand, ctx = mode_features(lifted_square.trajectory, cands, keyframe_data(lifted_square, cands, DEFAULT_CONFIG))
    assert cand.shape == (len(cands.facets), candidate_feature_dim()) and ctx.shape == (context_feature_dim(),)
    assert cand.dtype == np.float32 and np.isfinite(cand).all() and np.isfinite(ctx).all()
    np.testing.assert_array_equal(cand[:, -1] > 0.5, cands.valid)  # validity is the last feature


def test_soft_target_is_symmetric_in_the_fingers_and_vanishes_far_away():
    pts = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [0.3, 0.0]])
    valid = np.ones(4, bool)
    oracle = np.array([[0.101, 0.0], [0.299, 0.0]])
    t = soft_pair_target(pts, valid, oracle)
    np.testing.assert_allclose(t.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t, soft_pair_target(pts, valid, oracle[::-1]))
    assert pair_index(4)[np.argmax(t)].tolist() == [1, 3]
    assert soft_pair_target(pts, valid, oracle + 0.5) is None
    # an invalid candidate never carries target mass
    valid[3] = False
    assert soft_pair_target(pts, valid, oracle) is None


def test_classifier_is_symmetric_and_masks_invalid_pairs():
    torch.manual_seed(0)
    net = ContactModeNet(hidden=16, embed=8)
    B, C = 2, 5
    cand = torch.randn(B, C, candidate_feature_dim())
    ctx = torch.randn(B, context_feature_dim())
    valid = torch.ones(B, C, dtype=torch.bool)
    valid[1, 2] = False
    logits = net(cand, ctx, valid)
    assert logits.shape == (B, 10)
    pairs = pair_index(C)
    bad = (pairs == 2).any(1)
    assert torch.isinf(logits[1, bad]).all() and torch.isfinite(logits[0]).all()
    # swapping the candidates' order only permutes the pair scores (h_i + h_j and h_i * h_j are symmetric)
    perm = torch.tensor([4, 3, 2, 1, 0])
    swapped = net(cand[:, perm], ctx, valid[:, perm])
    lookup = {tuple(sorted((int(perm[i]), int(perm[j])))): k for k, (i, j) in enumerate(pairs)}
    order = [lookup[tuple(p)] for p in pairs.tolist()]
    torch.testing.assert_close(swapped[0, order], logits[0])


def test_oracle_on_proposed_pairs(lifted_square):
    full = solve_oracle(lifted_square)
    assert full.ok
    cands = contact_candidates(lifted_square)
    K = len(cands.facets) // lifted_square.n_facets
    best = np.sort(full.facets * K + np.rint(full.fractions * K - 0.5).astype(int))
    # the optimum among proposals that contain it is the optimum
    other = np.flatnonzero(cands.valid)[:2]
    restricted = solve_oracle(lifted_square, combos=np.array([other, best]))
    assert restricted.ok and restricted.cost == pytest.approx(full.cost, rel=1e-6)
    # without it, the plan is the best proposal: never better than the optimum
    pairs = np.array([p for p in itertools.combinations(np.flatnonzero(cands.valid), 2) if list(p) != best.tolist()])
    few = solve_oracle(lifted_square, combos=pairs[:5])
    assert not few.ok or few.cost >= full.cost - 1e-9
    if few.ok:
        chosen = sorted((few.facets * K + np.rint(few.fractions * K - 0.5).astype(int)).tolist())
        assert chosen in pairs[:5].tolist()


def test_plan_combos_is_each_combination_solved_alone(lifted_square):
    from dlm_gym.oracle import plan_combos

    cands = contact_candidates(lifted_square)
    valid = np.flatnonzero(cands.valid)
    invalid = np.flatnonzero(~cands.valid)
    combos = np.array([p for p in itertools.combinations(valid, 2)][::9][:10])
    if invalid.size:
        combos = np.vstack([combos, [[min(invalid[0], valid[0]), max(invalid[0], valid[0])]]])
    plans = plan_combos(lifted_square, combos)
    assert len(plans) == len(combos) and any(p.ok for p in plans)
    for combo, plan in zip(combos, plans, strict=True):
        alone = solve_oracle(lifted_square, combos=combo[None])
        assert plan.ok == alone.ok
        if plan.ok:
            assert plan.cost == pytest.approx(alone.cost, rel=1e-9)
            np.testing.assert_allclose(plan.commands(), alone.commands(), atol=1e-9)


@pytest.mark.parametrize(
    ("combos", "message"),
    [
        (np.zeros((0, 2), int), "non-empty"),
        (np.array([[0, 1, 2]]), r"\(P, 2\)"),
        (np.array([[0.0, 1.0]]), "integer"),
        (np.array([[0, 999]]), "index the task's"),
        (np.array([[3, 3]]), "distinct"),
    ],
)
def test_bad_proposals_are_refused(lifted_square, combos, message):
    with pytest.raises(ValueError, match=message):
        solve_oracle(lifted_square, combos=combos)


def test_proposals_need_the_enumeration_backend(lifted_square):
    with pytest.raises(ValueError, match="backend='enum'"):
        solve_oracle(lifted_square, backend="scip", combos=np.array([[0, 5]]))


def _videos(tasks):
    from dlm_gym.render import Renderer

    r = Renderer(DEFAULT_CONFIG)
    return np.stack([np.stack([r.frame(t.polygon, pose) for pose in t.trajectory]) for t in tasks])


def test_keypoint_dlm_plans_inside_the_action_box(lifted_square):
    torch.manual_seed(0)
    model = KeypointDLM(proposals=4)
    blank = np.full_like(_videos([lifted_square])[0], 255)
    commands, status = model.plan_videos(np.stack([_videos([lifted_square])[0], blank]))
    assert commands.shape == (2, DEFAULT_CONFIG.horizon, DEFAULT_CONFIG.num_fingers, 4)
    low, high = command_bounds(DEFAULT_CONFIG)
    assert (commands >= low - 1e-9).all() and (commands <= high + 1e-9).all()
    assert status[1] == "not_derendered"
    np.testing.assert_allclose(commands[1], noop_commands(DEFAULT_CONFIG))  # nothing seen, nothing done
    assert status[0] in ("top", "wider", "infeasible")


def test_command_head_starts_at_zero_and_gets_gradients():
    model = KeypointDLM()
    qp = torch.from_numpy(np.repeat(noop_commands(DEFAULT_CONFIG)[None], 3, 0)).float()
    qp[..., 2:] = 1.0  # forces well inside the box
    ctx = torch.randn(3, context_feature_dim())
    out = model.corrected(qp, ctx)
    torch.testing.assert_close(out, qp)  # zero-initialised residual
    out.sum().backward()
    assert model.command_head[-1].weight.grad.abs().sum() > 0
    # a trained head corrects forces only: the contact points stay on the estimated surface
    with torch.no_grad():
        model.command_head[-1].bias.normal_(0.0, 0.3)
        moved = model.corrected(qp, ctx)
    torch.testing.assert_close(moved[..., :2], qp[..., :2])
    assert (moved[..., 2:] - qp[..., 2:]).abs().max() > 0.01


def test_keypoint_dlm_checkpoint_round_trip_and_damage(tmp_path):
    from policies import CheckpointError

    torch.manual_seed(0)
    model = KeypointDLM(keypoints=4, channels=6, mode_hidden=16, mode_embed=8, command_hidden=8)
    path = save_checkpoint(model, tmp_path / "dlm.pt", policy="dlm", command="python examples/train_large.py")
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, KeypointDLM) and meta["hparams"]["keypoints"] == 4
    for name, t in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], t)
    payload = torch.load(path, weights_only=True)
    payload["hparams"] = {"latent_dim": 75, "lstm_layers": 5}
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="expected .*'channels'"):
        load_checkpoint(tmp_path / "wrong.pt")
    payload = torch.load(path, weights_only=True)
    payload["policy"] = "nn"
    torch.save(payload, tmp_path / "nn.pt")
    with pytest.raises(CheckpointError, match="does not go together"):
        load_checkpoint(tmp_path / "nn.pt")


# ------------------------------------------------------------------ examples/train_large.py
@pytest.fixture(scope="module")
def train_large(load_example):
    return load_example("train_large")


@pytest.fixture(scope="module")
def tiny_run(make_tiny_corpus):
    from policies.dlm.networks import KeypointEncoder, PoseHead

    root = make_tiny_corpus("train_large", 8, 4, 991_000)
    torch.manual_seed(0)
    pose = torch.nn.Module()
    pose.encoder, pose.head = KeypointEncoder(), PoseHead(8, 16)
    torch.save({"model": "keypoint", "state_dict": pose.state_dict()}, root / "keypoint.pt")
    return root


def test_train_large_writes_three_zoo_checkpoints(tiny_run, tmp_path, train_large):
    import policies
    from policies.common.curves import read_curve

    out = tmp_path / "run"
    args = ["--pose", str(tiny_run / "keypoint.pt"), "--corpus", str(tiny_run / "corpus"), "--out", str(out)]
    args += ["--val", str(tiny_run / "val.npz"), "--val-tasks", "3", "--mode-tasks", "6", "--mode-epochs", "2"]
    args += ["--batch-size", "4", "--qp-tasks", "6", "--qp-steps", "2", "--sim-tasks", "2", "--sim-epochs", "1"]
    assert train_large.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode_labelled"]["val"] <= 3 and "cvx" in summary
    # every stage keeps its start unless validation improves: dlm is never worse than cvx on validation
    assert summary["dlm"]["head"]["val_executed"][0] <= summary["cvx"]["val_executed"][0] + 1e-9
    assert summary["dlm"]["mode"]["rank_by_score"] == (
        summary["dlm"]["mode"]["val_ranked"] < summary["dlm"]["mode"]["val_qp_cheapest"]
    )
    stages = [r["stage"] for r in read_curve(out / "curve.csv")]
    assert stages[0] == "L_P" and "L_QP" in stages
    for name in ("mdr", "cvx", "dlm"):
        model, meta = load_checkpoint(out / f"{name}.pt")
        assert isinstance(model, KeypointDLM) and meta["policy"] == name
        assert meta["command"].startswith("python examples/train_large.py")
    # the zoo plays it through the one rollout loop
    policy = policies.make_policy("dlm", checkpoint=out / "dlm.pt")
    results = policies.evaluate(policy, tiny_run / "val.npz", progress=False)
    assert len(results) == 3 and all(np.isfinite(r.loss) for r in results)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode-tasks", "0"], "--mode-tasks"),
        (["--qp-tasks", "9", "--mode-tasks", "4"], "must not exceed"),
        (["--pose", "nowhere.pt"], "nowhere.pt"),
    ],
)
def test_train_large_bad_arguments_are_one_line(extra, message, train_large, capsys):
    with pytest.raises(SystemExit) as exc:
        train_large.main(extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_train_large_refuses_a_wrong_pose_file(tiny_run, tmp_path, train_large, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"model": "paper", "state_dict": {}}, bad)
    args = ["--pose", str(bad), "--corpus", str(tiny_run / "corpus"), "--val", str(tiny_run / "val.npz")]
    assert train_large.main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "not a keypoint pose network" in capsys.readouterr().err


# ------------------------------------------------------------------ examples/scaling_study.py
@pytest.fixture(scope="module")
def scaling(load_example):
    return load_example("scaling_study")


def test_scaling_subset_is_the_first_n_corpus_tasks(tiny_run, tmp_path, scaling):
    from dlm_gym.datasets import load_corpus, load_split

    cfg = scaling.parse_config(["--corpus", str(tiny_run / "corpus"), "--out", str(tmp_path)])
    scaling.subset_split(cfg, 6, tmp_path / "six.npz")  # spans both shards of 4
    six, corpus = load_split(tmp_path / "six.npz"), load_corpus(tiny_run / "corpus")
    first = list(corpus.shard(0)) + list(corpus.shard(1))[:2]
    assert len(six) == 6 and [t.seed for t in six.tasks] == [it.task.seed for it in first]
    np.testing.assert_array_equal(six.videos, np.stack([it.video for it in first]))
    with pytest.raises(ValueError, match="fewer than N = 9"):
        scaling.subset_split(cfg, 9, tmp_path / "nine.npz")


def test_scaling_figure_and_table(tmp_path, scaling):
    from policies.common.report import FLOOR

    cfg = scaling.parse_config(["--out", str(tmp_path), "--figure", str(tmp_path / "f.png"), "--sizes", "20,200"])

    def payload(scale):
        rows = [{"policy": p, "split": "family_xl", "loss_mean": scale * (i + 1), "loss_ci_low": 0.5 * scale,
                 "loss_ci_high": 4 * scale} for i, p in enumerate(("nn", "cvx", "dlm"))]  # fmt: skip
        rows += [{"policy": "noop", "split": "family_xl", "loss_mean": 40.0, "loss_ci_low": 38, "loss_ci_high": 42}]
        rows += [{"policy": FLOOR, "split": "family_xl", "loss_mean": 1.7, "loss_ci_low": 1.3, "loss_ci_high": 2.2}]
        return {"results": rows}

    table = scaling.figure(cfg, {20: payload(10.0), 200: payload(2.0)}, shipped=payload(1.0))
    assert table["policies"]["cvx"] == {20: [20.0, 5.0, 40.0], 200: [4.0, 1.0, 8.0]}
    assert table["shipped"]["dlm"] == [3.0, 0.5, 4.0]
    assert table["reference"] == {"noop": 40.0, FLOOR: 1.7}
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_bad_sizes_are_one_line(scaling, capsys):
    with pytest.raises(SystemExit) as exc:
        scaling.main(["--sizes", "20,x"])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1
