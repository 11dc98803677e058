"""vision_miqp's derendering: the task a video shows, from its silhouettes alone."""

import numpy as np
import pytest

import dlm_gym
import policies
from dlm_gym.render import Renderer
from policies import DerenderError
from policies.oracle.derender import estimate_task, object_coverage, outline_error, pose_errors


def test_coverage_is_exact_on_pure_pixels():
    video = Renderer().video(dlm_gym.sample_task(3).polygon, dlm_gym.sample_task(3).trajectory)
    alpha = object_coverage(video)
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    assert np.all(alpha[:, 0, 0] == 0.0)  # the top-left corner is background


@pytest.mark.parametrize("split, index", [("train", 0), ("train", 5), ("test", 2), ("smooth", 1)])
def test_estimated_tasks_are_millimetre_accurate(split, index):
    stored = dlm_gym.load_split(split)
    truth = stored.tasks[index]
    estimate = estimate_task(stored.videos[index])
    errors = pose_errors(estimate, truth)
    assert errors["position_m"].max() < 0.01  # a pixel is 1.6 cm
    assert np.degrees(errors["rotation_rad"].max()) < 2.0
    assert outline_error(estimate, truth) < 0.005
    # and the estimate renders back to (nearly) the same video
    again = Renderer().video(estimate.polygon, estimate.trajectory)
    assert np.abs(object_coverage(again) - object_coverage(stored.videos[index])).mean() < 0.02


def test_a_video_without_the_object_is_refused():
    blank = np.full((5, 50, 50, 3), 255, np.uint8)
    with pytest.raises(DerenderError, match="no object"):
        estimate_task(blank)
    with pytest.raises(DerenderError, match="video must be"):
        estimate_task(blank[:, :10])


def test_vision_miqp_plans_from_the_video_alone():
    policy = policies.make_policy("vision_miqp")
    assert not policy.privileged
    task = dlm_gym.load_split("train").tasks[0]
    result = policies.rollout(policy, task)  # the loop hands it no task
    assert policy.last_estimate is not None and policy.last_plan.ok
    assert result.loss < 5.0  # 0.34; the oracle on the true task scores 0.52 here, doing nothing 64


def test_the_study_script_prints_the_accuracy(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "derender_study.py"
    spec = importlib.util.spec_from_file_location("derender_study", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--split", "train", "--tasks", "2", "--no-loss"]) == 0
    out = capsys.readouterr().out
    assert "2 tasks, 0 not derendered" in out and "rotation" in out and "mm" in out
