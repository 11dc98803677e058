import numpy as np
import pytest
import torch

from dlm_gym.datasets import load_split
from policies import CheckpointError
from policies.dlm.losses import lnn_loss, lp_loss, lqp_loss, split_data, train_stage
from policies.dlm.models import DLMNet, NNNet, load_checkpoint, save_checkpoint
from policies.dlm.networks import video_to_tensor


@pytest.fixture(scope="module")
def train():
    return split_data("train")


def test_video_to_tensor_checks_its_input():
    v = np.zeros((2, 5, 50, 50, 3), np.uint8)
    assert video_to_tensor(v).shape == (2, 5, 3, 50, 50)
    with pytest.raises(ValueError, match="uint8"):
        video_to_tensor(v.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, T, H, W, 3\)"):
        video_to_tensor(np.zeros((2, 5, 50, 50), np.uint8))


def test_dlm_decoder_round_trips_the_oracle_labels(train):
    """Feeding the exact standardised labels through unpack/solve reproduces the oracle's parameters and forces."""
    torch.manual_seed(0)
    model = DLMNet()
    model.set_label_statistics(train.p_vectors.numpy(), train.log_inertia.numpy())
    mean, std = model.log_inertia_stats
    pred = torch.cat([(train.p_vectors - model.p_mean) / model.p_std, ((train.log_inertia - mean) / std)[:, None]], 1)
    fields, inertia = model.unpack(pred)
    split = load_split("train")
    assert torch.allclose(fields["jacobian"].double(), torch.as_tensor(split.params["jacobian"]), atol=1e-5)
    assert torch.allclose(inertia, train.log_inertia.exp(), rtol=1e-5)
    sol = model.solve({k: v.double() for k, v in fields.items()}, inertia.double())
    # with the true P(t) the QP's wrench balance holds almost exactly
    assert sol.slack.abs().max() < 0.05
    assert torch.allclose(sol.finger_positions, torch.as_tensor(split.commands[..., :2]), atol=1e-3)


@pytest.mark.slow
def test_losses_decrease_and_gradients_flow(train):
    torch.manual_seed(0)
    small = lambda cls: cls(latent_dim=16, lstm_layers=1)  # noqa: E731
    dlm = small(DLMNet)
    dlm.set_label_statistics(train.p_vectors.numpy(), train.log_inertia.numpy())
    for loss_fn in (lp_loss, lqp_loss):
        hist = train_stage(dlm, "t", loss_fn, train, iterations=15, lr=3e-3, progress=False)
        assert hist[-1] < hist[0]
    nn_model = small(NNNet)
    hist = train_stage(nn_model, "t", lnn_loss, train, iterations=15, lr=3e-3, progress=False)
    assert hist[-1] < hist[0]


def test_checkpoint_round_trip_and_errors(tmp_path, train):
    torch.manual_seed(0)
    model = NNNet(latent_dim=16, lstm_layers=1).eval()
    path = save_checkpoint(model, tmp_path / "nn.pt", policy="nn", command="python examples/train.py --policy nn")
    loaded, meta = load_checkpoint(path)
    assert meta["command"].startswith("python examples/train.py")
    with torch.no_grad():
        assert torch.equal(loaded.commands(train.videos[:2]), model.commands(train.videos[:2]))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt.*corrupt"):
        load_checkpoint(bad)
    torch.save({"kind": "rocket"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a dlm-gym model"):
        load_checkpoint(tmp_path / "other.pt")
