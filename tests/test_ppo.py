"""The PPO baseline: shipped checkpoint, safe loading, training end to end, the rl-zoo file."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dlm_gym
import policies
from policies.common.curves import read_curve
from policies.rl import loading
from policies.rl import ppo as ppo_module
from policies.rl import zoo_hyperparams as hyperparams
from policies.rl.callbacks import validation_tasks
from policies.rl.ppo import (
    DEFAULT_CHECKPOINT,
    HYPERPARAMS_FILE,
    PPO_HYPERPARAMS,
    SCRATCH_CHECKPOINT,
    CheckpointError,
    NNPlanExtractor,
    PPOPolicy,
    PPOScratchPolicy,
    VideoCNN,
    load_ppo_model,
    train_ppo,
)

REPO = Path(__file__).resolve().parent.parent
TINY = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ppo") / "tiny.zip"
    return train_ppo(256, seed=3, out_path=out, n_envs=2, hyperparams=TINY, n_val_tasks=2, eval_every=2, progress=False)


@pytest.mark.parametrize(
    "name, cls, checkpoint, extractor",
    [
        ("ppo", PPOPolicy, DEFAULT_CHECKPOINT, NNPlanExtractor),
        ("ppo_scratch", PPOScratchPolicy, SCRATCH_CHECKPOINT, VideoCNN),
    ],
)
def test_registered_and_shipped_checkpoint_plays_an_episode(name, cls, checkpoint, extractor):
    assert name in policies.available_policies()
    policy = policies.make_policy(name)
    assert type(policy) is cls and policy.name == name
    assert policy.checkpoint == checkpoint
    assert type(policy.model.policy.features_extractor) is extractor
    task = dlm_gym.sample_task(123, n_facets=(4, 6))
    result = policies.rollout(policy, task)
    assert np.isfinite(result.loss) and result.loss >= 0
    assert result.simulated_trajectory.shape == (task.horizon, 3)
    # deterministic: the same episode again gives the same loss
    assert policies.rollout(policy, task).loss == pytest.approx(result.loss)


def test_act_returns_a_valid_action():
    policy = policies.make_policy("ppo")
    env = dlm_gym.envs.VideoPlanarManipEnv()
    obs, info = env.reset(seed=5)
    policy.reset(obs, info)
    action = policy.act(obs)
    assert action.shape == (2, 4) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)


def test_shipped_learning_curves_are_next_to_the_checkpoints(load_example):
    rows = read_curve(SCRATCH_CHECKPOINT.with_name("ppo_scratch_log.csv"))
    assert {r["stage"] for r in rows} == {"RL"}
    assert int(rows[-1]["step"]) == int(PPO_HYPERPARAMS["n_timesteps"])
    assert rows[-1]["executed_validation"] != ""
    assert rows[-1]["executed_validation_std"] != ""
    # ppo: nn's validation at step 0, the critic's warm-up, then the fine-tuning, with the script's defaults
    cfg = load_example("rl_finetune").Config()
    rows = read_curve(DEFAULT_CHECKPOINT.with_name("ppo_log.csv"))
    assert [r["stage"] for r in rows][:2] == ["nn", "critic"] and rows[-1]["stage"] == "RL"
    assert int(rows[-1]["step"]) == cfg.critic_steps + cfg.timesteps
    assert rows[0]["executed_validation"] != "" and rows[-1]["executed_validation"] != ""


def test_missing_checkpoint_names_file_and_command(tmp_path):
    missing = tmp_path / "nope.zip"
    with pytest.raises(CheckpointError, match="nope.zip") as err:
        policies.make_policy("ppo", checkpoint=missing)
    assert "examples/rl_finetune.py" in str(err.value) and "--policy ppo_scratch" in str(err.value)


def test_missing_default_checkpoint_names_the_regenerate_command(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", tmp_path / "ppo.zip")
    with pytest.raises(CheckpointError) as err:
        load_ppo_model(tmp_path / "ppo.zip")
    assert loading.REGENERATE_COMMAND in str(err.value)
    monkeypatch.setattr(loading, "SCRATCH_CHECKPOINT", tmp_path / "ppo_scratch.zip")
    with pytest.raises(CheckpointError) as err:
        load_ppo_model(tmp_path / "ppo_scratch.zip")
    assert loading.SCRATCH_REGENERATE_COMMAND in str(err.value)


@pytest.mark.parametrize("kind", ["garbage", "empty_zip", "truncated"])
def test_corrupt_checkpoint_raises_clear_error(tmp_path, kind, tiny_checkpoint):
    bad = tmp_path / f"{kind}.zip"
    if kind == "garbage":
        bad.write_bytes(b"this is not a zip file")
    elif kind == "empty_zip":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("readme.txt", "no data")
    else:
        blob = tiny_checkpoint.read_bytes()
        bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=f"{kind}.zip") as err:
        PPOPolicy(checkpoint=bad)
    assert "examples/rl_finetune.py" in str(err.value)


def test_checkpoint_with_other_network_is_refused(tmp_path, tiny_checkpoint):
    # Same archive, but policy.pth from a smaller network: the loader must not silently accept it.
    import torch

    bad = tmp_path / "other_net.zip"
    with zipfile.ZipFile(tiny_checkpoint) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            if item.filename == "policy.pth":
                buf = __import__("io").BytesIO()
                torch.save({"action_net.weight": torch.zeros(3, 3)}, buf)
                dst.writestr(item, buf.getvalue())
            else:
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(CheckpointError, match="other_net.zip"):
        PPOPolicy(checkpoint=bad)


def test_train_ppo_tiny_budget_end_to_end(tiny_checkpoint):
    assert tiny_checkpoint.is_file()
    rows = read_curve(tiny_checkpoint.with_name("tiny_log.csv"))
    assert list(rows[0]) == ["stage", "step", "seconds", "objective", "executed_validation", "executed_validation_std"]
    assert rows[0]["executed_validation"] != "" and rows[0]["objective"] == ""  # validated before training
    assert int(rows[-1]["step"]) == 256 and rows[-1]["executed_validation"] != ""
    assert all(r["stage"] == "RL" for r in rows) and any(r["objective"] != "" for r in rows)
    assert not tiny_checkpoint.with_name("tiny_log.csv.partial").exists()
    policy = policies.make_policy("ppo", checkpoint=tiny_checkpoint)
    result = policies.rollout(policy, dlm_gym.sample_task(7))
    assert np.isfinite(result.loss)


def test_train_ppo_is_reproducible(tmp_path, tiny_checkpoint):
    again = train_ppo(
        256, seed=3, out_path=tmp_path / "again.zip", n_envs=2, hyperparams=TINY, n_val_tasks=0, progress=False
    )
    a = load_ppo_model(tiny_checkpoint).policy.state_dict()
    b = load_ppo_model(again).policy.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key


def test_train_ppo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown PPO hyperparameter"):
        train_ppo(64, out_path=tmp_path / "x.zip", hyperparams={"n_stepz": 3})
    with pytest.raises(ValueError, match="fixed"):
        train_ppo(64, out_path=tmp_path / "x.zip", hyperparams={"policy_kwargs": "dict()"})
    with pytest.raises(ValueError, match="positive"):
        train_ppo(0, out_path=tmp_path / "x.zip")
    with pytest.raises(ValueError, match="vec_env"):
        train_ppo(64, out_path=tmp_path / "x.zip", vec_env="threads")


def test_zoo_hyperparameter_file_matches_the_shipped_run():
    yaml = pytest.importorskip("yaml")
    content = yaml.safe_load(HYPERPARAMS_FILE.read_text())
    hp = content["VideoPlanarManip-v0"]
    assert hp == hyperparams.read_zoo_file()
    assert hp["env_wrapper"] == "dlm_gym.wrappers.StackVideoChannels"
    assert hp["policy"] == "MultiInputPolicy"
    assert hp == PPO_HYPERPARAMS
    # the wrapper and the policy kwargs resolve the way rl_zoo3 resolves them
    module, _, cls = hp["env_wrapper"].rpartition(".")
    assert getattr(importlib.import_module(module), cls) is dlm_gym.wrappers.StackVideoChannels
    kwargs = eval(hp["policy_kwargs"], {"importlib": importlib})  # noqa: S307  (as rl_zoo3 does)
    assert kwargs["features_extractor_class"] is ppo_module.VideoCNN
    # the zoo reads the same strings without eval, to the same objects
    assert hyperparams.policy_kwargs(hp) == kwargs
    assert hyperparams.normalize_kwargs(hp["normalize"]) == eval(hp["normalize"])  # noqa: S307


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "dict(a=open('/etc/passwd'))",
        "importlib.import_module('os').system",
        "importlib.import_module('subprocess').Popen",
        "dict(**kwargs)",
        "dict(a=1 + 2)",
        "[x for x in ()]",
        "nn.functional",
        "dict(a=",
    ],
)
def test_zoo_expressions_are_parsed_never_evaluated(text):
    with pytest.raises(ValueError):
        hyperparams.parse_expression(text)


def test_zoo_expression_forms():
    import torch

    parse = hyperparams.parse_expression
    assert parse("dict(norm_obs=False, norm_reward=True)") == {"norm_obs": False, "norm_reward": True}
    assert parse("dict(activation_fn=nn.ReLU, net_arch=dict(pi=[64, 64], vf=[]), log_std_init=-1, "
                 "ortho_init=True, shape=(1, 2.5), x=None, name='a')") == {
        "activation_fn": torch.nn.ReLU, "net_arch": {"pi": [64, 64], "vf": []}, "log_std_init": -1,
        "ortho_init": True, "shape": (1, 2.5), "x": None, "name": "a"}  # fmt: skip
    assert parse("importlib.import_module('policies.rl.ppo').VideoCNN") is VideoCNN
    assert parse("importlib.import_module('policies.rl.extractors').VideoCNN") is VideoCNN


def test_zoo_schedules():
    schedule = hyperparams.parse_schedule("lin_3e-4")
    assert [schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([3e-4, 1.5e-4, 0.0])
    assert hyperparams.parse_schedule(0.2) == 0.2 and hyperparams.parse_schedule(1) == 1.0
    for bad in ("exp_1e-3", "lin_", "lin_fast", "3e-4"):
        with pytest.raises(ValueError, match="schedule"):
            hyperparams.parse_schedule(bad)


def test_learning_curve_validates_through_the_shared_rollout_loop(tiny_checkpoint):
    # The last row validates the final model, which is the saved one: playing the saved
    # checkpoint on the same tasks through policies.evaluate must give the same numbers.
    rows = read_curve(tiny_checkpoint.with_name("tiny_log.csv"))
    results = policies.evaluate(PPOPolicy(checkpoint=tiny_checkpoint), validation_tasks(2), progress=False)
    losses = np.array([r.loss for r in results])
    assert float(rows[-1]["executed_validation"]) == pytest.approx(losses.mean())
    assert float(rows[-1]["executed_validation_std"]) == pytest.approx(losses.std())


def test_checkpoints_saved_before_the_split_still_load_with_plain_sb3():
    # the ppo_scratch zip pickles policies.rl.ppo.VideoCNN and policies.rl.ppo._LinearSchedule by name
    from stable_baselines3 import PPO

    model = PPO.load(SCRATCH_CHECKPOINT, device="cpu")
    assert type(model.policy.features_extractor) is VideoCNN
    # and rl_zoo3's enjoy (plain PPO.load) plays the shipped ppo too
    assert type(PPO.load(DEFAULT_CHECKPOINT, device="cpu").policy.features_extractor) is NNPlanExtractor


def test_import_policies_leaves_stable_baselines3_out():
    code = (
        "import sys, policies; assert 'stable_baselines3' not in sys.modules, 'import policies imported SB3'; "
        "import policies.rl; assert 'stable_baselines3' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(
    importlib.util.find_spec("rl_zoo3") is None, reason="rl_zoo3 is not installed (pip install rl_zoo3)"
)
@pytest.mark.slow
def test_rl_zoo3_train_smoke(tmp_path):
    cmd = [
        sys.executable, "-m", "rl_zoo3.train",
        "--algo", "ppo", "--env", "VideoPlanarManip-v0", "--gym-packages", "dlm_gym",
        "-conf", str(HYPERPARAMS_FILE), "-f", str(tmp_path),
        "-n", "128", "--seed", "0", "--eval-freq", "-1", "--verbose", "0", "--num-threads", "1",
        "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    saved = list(tmp_path.glob("ppo/VideoPlanarManip-v0_*/VideoPlanarManip-v0.zip"))
    assert saved, list(tmp_path.rglob("*"))
    # a zoo-trained model loads with the zoo's policy loader too
    policy = PPOPolicy(checkpoint=saved[0])
    assert policies.rollout(policy, dlm_gym.sample_task(11)).loss >= 0


def test_train_cli_help_and_list():
    script = REPO / "examples" / "train.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--policy", "--timesteps", "--seed", "--out", "--n-envs", "--vec-env", "--threads", "--no-progress"):
        assert flag in out.stdout
    listed = subprocess.run([sys.executable, str(script), "--list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "ppo_scratch" in listed.stdout.split()
    # ppo and ppo_state are trained by their own scripts: the CLI names them in one line
    other = subprocess.run([sys.executable, str(script), "--policy", "ppo"], capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and "examples/rl_finetune.py" in other.stderr and "Traceback" not in other.stderr


# ---------------------------------------------------------------- users' own PPO checkpoints
def _user_ppo(policy_kwargs=None, **kwargs):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("VideoPlanarManip-v0", n_envs=2, seed=0, wrapper_class=dlm_gym.wrappers.StackVideoChannels)
    return PPO(
        "MultiInputPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
        **kwargs,
    )


@pytest.fixture(scope="module")
def default_user_checkpoint(tmp_path_factory):
    """A PPO trained a few hundred steps with SB3's defaults (MultiInputPolicy: CombinedExtractor/NatureCNN)."""
    model = _user_ppo()
    model.learn(256)
    path = tmp_path_factory.mktemp("user_ppo") / "default.zip"
    model.save(path)
    return model, path


def _same_actions(model, policy, seeds=(1, 2)):
    env = dlm_gym.envs.VideoPlanarManipEnv()
    wrapper = dlm_gym.wrappers.StackVideoChannels(env)
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        policy.reset(obs, info)
        expected, _ = model.predict(wrapper.observation(obs), deterministic=True)
        assert np.allclose(policy.act(obs), np.asarray(expected).reshape(2, 4), atol=1e-6)


@pytest.mark.slow
def test_user_ppo_with_sb3_defaults_loads_and_acts_like_the_original(default_user_checkpoint):
    model, path = default_user_checkpoint
    policy = policies.make_policy("ppo", checkpoint=path)
    extractor = policy.model.policy.features_extractor
    assert type(extractor).__name__ == "CombinedExtractor"
    assert policy.model.policy.net_arch == {"pi": [64, 64], "vf": [64, 64]}
    _same_actions(model, policy)
    assert np.isfinite(policies.rollout(policy, dlm_gym.sample_task(7)).loss)


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "net_arch": {"pi": [32], "vf": [16, 16]},
            "activation_fn": "ReLU",
            "share_features_extractor": False,
            "features_extractor_kwargs": {"cnn_output_dim": 48},
        },
        {
            "features_extractor_class": ppo_module.VideoCNN,
            "features_extractor_kwargs": {"features_dim": 40, "channels": (8, 16, 16)},
            "net_arch": {"pi": [24], "vf": []},
        },
    ],
    ids=["combined_other_sizes", "videocnn_other_sizes"],
)
def test_user_ppo_network_sizes_are_inferred_from_the_weights(tmp_path, kwargs):
    import torch

    if isinstance(kwargs.get("activation_fn"), str):
        kwargs = {**kwargs, "activation_fn": getattr(torch.nn, kwargs["activation_fn"])}
    model = _user_ppo(kwargs)
    model.save(tmp_path / "user.zip")
    policy = PPOPolicy(checkpoint=tmp_path / "user.zip")
    loaded = policy.model.policy
    assert loaded.net_arch == model.policy.net_arch
    assert loaded.share_features_extractor == model.policy.share_features_extractor
    assert loaded.activation_fn is model.policy.activation_fn
    _same_actions(model, policy)


class _UserExtractor(__import__("stable_baselines3").common.torch_layers.BaseFeaturesExtractor):
    def __init__(self, observation_space):
        import torch

        super().__init__(observation_space, 6)
        self.linear = torch.nn.Linear(6, 6)

    def forward(self, obs):
        return self.linear(obs["step"].float())


@pytest.mark.parametrize("case", ["custom_extractor", "gsde"])
def test_other_user_networks_get_a_clear_checkpoint_error(tmp_path, case):
    kwargs = {"features_extractor_class": _UserExtractor} if case == "custom_extractor" else None
    model = _user_ppo(kwargs, use_sde=(case == "gsde"))
    model.save(tmp_path / f"{case}.zip")
    with pytest.raises(policies.CheckpointError, match=rf"{case}\.zip is not supported: .*MultiInputPolicy"):
        policies.make_policy("ppo", checkpoint=tmp_path / f"{case}.zip")


def _rewrite_data(src, dst, edit):
    import json

    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for item in a.infolist():
            blob = a.read(item.filename)
            if item.filename == "data":
                data = json.loads(blob)
                edit(data)
                blob = json.dumps(data).encode()
            b.writestr(item, blob)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_loader_never_unpickles_the_policy_class(tmp_path, default_user_checkpoint):
    import base64
    import pickle

    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    _, path = default_user_checkpoint
    marker = tmp_path / "pwned"
    cases = {"code.zip": _Payload(marker), "cnn_policy.zip": ActorCriticCnnPolicy}
    for name, obj in cases.items():
        blob = base64.b64encode(pickle.dumps(obj)).decode()
        _rewrite_data(path, tmp_path / name, lambda d, blob=blob: d["policy_class"].update({":serialized:": blob}))
        with pytest.raises(policies.CheckpointError, match="policy class is") as err:
            policies.make_policy("ppo", checkpoint=tmp_path / name)
        assert not marker.exists()
    assert "ActorCriticCnnPolicy" in str(err.value)


def test_the_last_curve_row_is_the_saved_model_at_a_constant_rate(tmp_path):
    # SB3 updates after each rollout's end: with a rate that does not decay to 0 the last update
    # changes the model, and the log's last row must still describe the saved one
    out = train_ppo(
        256,
        seed=5,
        out_path=tmp_path / "const.zip",
        n_envs=2,
        hyperparams={**TINY, "learning_rate": 3e-3},
        n_val_tasks=2,
        eval_every=1,
        progress=False,
    )
    rows = read_curve(out.with_name("const_log.csv"))
    assert [int(r["step"]) for r in rows] == [0, 128, 256]
    losses = [r.loss for r in policies.evaluate(PPOPolicy(checkpoint=out), validation_tasks(2), progress=False)]
    assert float(rows[-1]["executed_validation"]) == pytest.approx(np.mean(losses))
