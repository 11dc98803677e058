#!/usr/bin/env python
"""Train a policy of the zoo and write its checkpoint (plus a learning-curve CSV next to it).

Examples:
    python examples/train.py --policy ppo_scratch                           # the shipped ppo_scratch checkpoint
    python examples/train.py --policy ppo_scratch --timesteps 20000 --out runs/ppo_small.zip
    python examples/train.py --policy dlm                                   # learned policies (defaults below)
    python examples/train.py --policy cvx --iterations 100 --lr 1e-4 --grad-clip none   # the paper's schedule
    python examples/train.py --policy dlm --init-checkpoint runs/cvx.pt --out runs/dlm.pt  # skip cvx's stages
    python examples/train.py --policy cvx --train-split /tmp/train400.npz --batch-size 50  # more generated tasks
    python examples/train.py --policy cvx --eval-splits family test --eval-every 10      # more curve points
    python examples/train.py --list

Learned policies (nn, nnm, mdr, cvx, dlm) run the stages of
policies.dlm.architectures.ARCHITECTURES (policies/dlm/trainer.py): --iterations
full-batch Adam steps at --lr for each supervised stage (L_P, L_QP, L_NN;
default 1000 at 1e-3 with gradient-norm clipping 1.0), and --sim-iterations at
--sim-lr for the L_sim stage of dlm and nnm (default 30 at 1e-4; --sim-grad
fd|autodiff). The paper's literal schedule is --iterations 100 --lr 1e-4
--sim-iterations 100 --sim-lr 1e-4 --grad-clip none. Their flags are the fields
of policies.dlm.config.TrainConfig, which the checkpoint stores with the exact
command that rebuilds it.

The shipped ``ppo`` starts from the ``nn`` checkpoint and is fine-tuned by PPO:
``examples/rl_finetune.py`` trains it; the privileged ``ppo_state`` is trained by
``examples/rl_study.py --ship`` (see the README's RL section).

Each policy family plugs in as one entry of TRAINERS: a function
``trainer(args) -> Path`` that reads the parsed flags it needs and returns the
written checkpoint. Training logic lives in the ``policies`` package; this
script only parses flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dlm_gym import cli
from policies.dlm.architectures import LEARNED
from policies.dlm.config import TrainConfig


def _train_ppo(args: argparse.Namespace) -> Path:
    from policies.rl.ppo import SCRATCH_CHECKPOINT, train_ppo

    return train_ppo(
        total_timesteps=args.timesteps,
        seed=args.seed,
        out_path=args.out if args.out is not None else SCRATCH_CHECKPOINT,
        n_envs=args.n_envs,
        vec_env=args.vec_env,
        num_threads=args.threads,
        progress=not args.no_progress,
        verbose=args.verbose,
    )


def _train_learned(args: argparse.Namespace) -> Path:
    from policies.dlm.trainer import train_policy

    return train_policy(TrainConfig.from_args(args), progress=not args.no_progress)


#: Zoo policies trained by another script: name -> the command.
ELSEWHERE = {
    "ppo": "python examples/rl_finetune.py --out DIR (it starts from the nn checkpoint)",
    "ppo_state": "python examples/rl_study.py --algo ppo --markov --out DIR --ship FILE.zip",
}

#: policy name -> trainer(args) -> checkpoint path.
TRAINERS: dict[str, Callable[[argparse.Namespace], Path]] = {
    "ppo_scratch": _train_ppo,
    **{name: _train_learned for name in LEARNED},
}


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the flags: paths and numbers are validated here, before any work (one-line errors, exit 2)."""
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--policy",
        choices=sorted([*TRAINERS, *ELSEWHERE]),
        help="which policy to train (required unless --list); ppo and ppo_state are trained by their own "
        "scripts, which this names",
    )
    p.add_argument(
        "--timesteps",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="training budget in environment steps (5 per episode) for RL policies "
        "(default: the policy's shipped budget, e.g. ppo_scratch: n_timesteps of "
        "policies/rl/hyperparams/ppo_scratch.yml)",
    )
    p.add_argument(
        "--n-envs",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="parallel environments for RL policies (default: n_envs of the hyperparameter file, 8 for ppo)",
    )
    p.add_argument(
        "--vec-env",
        choices=["dummy", "subproc"],
        default="dummy",
        help="vectorisation of RL environments: 'dummy' steps them in this process, 'subproc' in one "
        "process each (default: dummy, as fast here because the network, not the env, is the cost)",
    )
    # --seed, --threads and --out (read by every trainer), then the learned policies' flags: all from TrainConfig
    TrainConfig.add_arguments(p, skip=("policy",))
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--verbose", type=int, default=0, choices=[0, 1, 2], help="library verbosity, e.g. SB3's (default: 0)"
    )
    p.add_argument("--list", action="store_true", help="list the trainable policies and exit")
    args = p.parse_args(argv)
    if not args.list and args.policy is None:
        p.error("--policy is required (trainable: " + ", ".join(sorted(TRAINERS)) + ")")
    if args.policy in ELSEWHERE:
        p.error(f"{args.policy} is trained by `{ELSEWHERE[args.policy]}`")
    if args.policy in LEARNED:
        try:  # the settings that only go wrong together (a corpus without --batch-size), before any work
            TrainConfig.from_args(args)
        except ValueError as exc:
            p.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(sorted(TRAINERS)))
        return 0
    start = time.perf_counter()
    from policies import CheckpointError

    try:
        path = TRAINERS[args.policy](args)
    except (CheckpointError, *cli.USER_ERRORS) as exc:  # a damaged split or checkpoint, a checkpoint of another kind
        return cli.fail(exc)
    minutes = (time.perf_counter() - start) / 60
    print(f"wrote {path} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
