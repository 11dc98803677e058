"""The zoo's infrastructure, apart from every policy family.

- :mod:`~policies.common.base`: the policy protocol (``Policy``, ``OpenLoopPolicy``);
- :mod:`~policies.common.registry`: names -> factories, loading families lazily;
- :mod:`~policies.common.rollout`: the one rollout loop that judges every policy;
- :mod:`~policies.common.report`: comparison tables with the oracle floor and the noop ceiling;
- :mod:`~policies.common.figures`: the paper's Fig. 6 (learning curves) and Fig. 7 (rollout grid);
- :mod:`~policies.common.curves`: the one learning-curve log format;
- :mod:`~policies.common.statistics`: bootstrap confidence intervals;
- :mod:`~policies.common.errors`: the error hierarchy; :mod:`~policies.common.paths`: where files live.
"""
