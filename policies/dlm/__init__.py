"""The DLM machinery (paper Sections 4-5), in pipeline order.

- :mod:`~policies.dlm.networks`: the video encoder of eq. 3 and the MLP heads;
- :mod:`~policies.dlm.qp`: the differentiable inverse-dynamics QP of eq. 6;
- :mod:`~policies.dlm.architectures`: the learned policies (mdr, cvx, dlm, nn, nnm) and their stages;
- :mod:`~policies.dlm.models`: ``DLMNet`` (video -> P(t) -> QP -> commands), ``NNNet``, and checkpoints;
- :mod:`~policies.dlm.simgrad` and :mod:`~policies.dlm.diffsim`: gradients of L_sim through the
  simulator, by finite differences over pymunk and by a smoothed torch model;
- :mod:`~policies.dlm.losses`: L_P, L_QP, L_NN and L_sim;
- :mod:`~policies.dlm.config` and :mod:`~policies.dlm.trainer`: ``TrainConfig`` and the staged trainer.

Nothing here is imported by ``import policies``; the zoo's ``learned`` family
imports what it needs when a learned policy is built.
"""
