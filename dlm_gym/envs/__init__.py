"""Gymnasium environments of dlm-gym."""

from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv

__all__ = ["VideoPlanarManipEnv"]
