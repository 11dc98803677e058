#!/usr/bin/env python
"""Train a policy of the zoo and write its checkpoint (plus a learning-curve CSV next to it).

Examples:
    python examples/train.py --policy ppo                                   # the shipped ppo checkpoint
    python examples/train.py --policy ppo --timesteps 20000 --out runs/ppo_small.zip
    python examples/train.py --list

Each policy family plugs in as one entry of TRAINERS: a function
``trainer(args) -> Path`` that reads the parsed flags it needs and returns the
written checkpoint. Training logic lives in the ``policies`` package; this
script only parses flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable


def _train_ppo(args: argparse.Namespace) -> Path:
    from policies.rl.ppo import DEFAULT_CHECKPOINT, train_ppo

    return train_ppo(
        total_timesteps=args.timesteps,
        seed=args.seed,
        out_path=args.out if args.out is not None else DEFAULT_CHECKPOINT,
        n_envs=args.n_envs,
        vec_env=args.vec_env,
        num_threads=args.threads,
        progress=not args.no_progress,
        verbose=args.verbose,
    )


#: policy name -> trainer(args) -> checkpoint path. Other families (nn, nnm,
#: mdr, cvx, dlm) add their entry here.
TRAINERS: dict[str, Callable[[argparse.Namespace], Path]] = {
    "ppo": _train_ppo,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--policy",
        choices=sorted(TRAINERS),
        help="which policy to train (required unless --list)",
    )
    p.add_argument(
        "--timesteps",
        type=int,
        default=None,
        metavar="N",
        help="training budget in environment steps (5 per episode) for RL policies "
        "(default: the policy's shipped budget, e.g. ppo: n_timesteps of policies/rl/hyperparams/ppo.yml)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the network initialisation, the exploration and the training tasks "
        "(default: 0; same seed and --threads on the same machine give the same checkpoint)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="checkpoint to write (default: the shipped one, policies/checkpoints/<policy>.zip); "
        "the learning curve goes to <stem>_log.csv beside it",
    )
    p.add_argument(
        "--n-envs",
        type=int,
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
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads used while training (default: 1); part of what makes a run reproducible",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="library verbosity, e.g. SB3's (default: 0)")
    p.add_argument("--list", action="store_true", help="list the trainable policies and exit")
    args = p.parse_args(argv)
    if not args.list and args.policy is None:
        p.error("--policy is required (trainable: " + ", ".join(sorted(TRAINERS)) + ")")
    for flag in ("timesteps", "n_envs", "threads"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            p.error(f"--{flag.replace('_', '-')} must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(sorted(TRAINERS)))
        return 0
    start = time.perf_counter()
    path = TRAINERS[args.policy](args)
    minutes = (time.perf_counter() - start) / 60
    print(f"wrote {path} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
