"""The oracle family: MIQP planners of the zoo.

- ``miqp`` (:class:`~policies.oracle.miqp.MIQPPolicy`): the privileged oracle of
  :mod:`dlm_gym.oracle` on the true task, the floor of every table;
- ``vision_miqp`` (:class:`~policies.oracle.miqp.VisionMIQPPolicy`): the same
  oracle on the task estimated from the video alone by
  :mod:`policies.oracle.derender`, the reference every learned policy is judged against.
"""

from policies.oracle import miqp  # noqa: F401  (registers miqp and vision_miqp)
