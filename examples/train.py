#!/usr/bin/env python
"""Train a policy of the zoo and write its checkpoint (plus a learning-curve CSV next to it).

Examples:
    python examples/train.py --policy ppo                                   # the shipped ppo checkpoint
    python examples/train.py --policy ppo --timesteps 20000 --out runs/ppo_small.zip
    python examples/train.py --policy dlm                                   # learned policies (defaults below)
    python examples/train.py --policy cvx --iterations 100 --lr 1e-4 --grad-clip none   # the paper's schedule
    python examples/train.py --policy dlm --init-checkpoint runs/cvx.pt --out runs/dlm.pt  # skip cvx's stages
    python examples/train.py --policy cvx --train-split /tmp/train400.npz --batch-size 50  # more generated tasks
    python examples/train.py --list

Learned policies (nn, nnm, mdr, cvx, dlm) run the stages of
policies.training.STAGES (policies/train_learned.py): --iterations full-batch
Adam steps at --lr for each supervised stage (L_P, L_QP, L_NN; default 1000 at
1e-3 with gradient-norm clipping 1.0), and --sim-iterations at --sim-lr for the
L_sim stage of dlm and nnm (default 30 at 1e-4; --sim-grad fd|autodiff). The
paper's literal schedule is --iterations 100 --lr 1e-4 --sim-iterations 100
--sim-lr 1e-4 --grad-clip none.

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

from dlm_gym import cli


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


def _learned_trainer(name: str) -> Callable[[argparse.Namespace], Path]:
    def train(args: argparse.Namespace) -> Path:
        from policies.train_learned import train_policy

        return train_policy(
            name,
            iterations=args.iterations,
            lr=args.lr,
            sim_iterations=args.sim_iterations,
            sim_lr=args.sim_lr,
            weight_decay=args.weight_decay,
            grad_clip="default" if args.grad_clip is None else (None if args.grad_clip == "none" else args.grad_clip),
            cosine=None if args.lr_schedule is None else args.lr_schedule == "cosine",
            latent_dim=args.latent_dim,
            lstm_layers=args.lstm_layers,
            seed=args.seed,
            out_path=args.out,
            sim_grad=args.sim_grad,
            sim_deterministic=args.sim_eval_mode,
            train_split=args.train_split or "train",
            batch_size=args.batch_size,
            finetune_split=args.finetune_split or "finetune",
            init_checkpoint=args.init_checkpoint,
            threads=args.threads,
            progress=not args.no_progress,
        )

    return train


#: policy name -> trainer(args) -> checkpoint path.
TRAINERS: dict[str, Callable[[argparse.Namespace], Path]] = {
    "ppo": _train_ppo,
    **{name: _learned_trainer(name) for name in ("nn", "nnm", "mdr", "cvx", "dlm")},
}


def grad_clip(text: str) -> str | float:
    """``none`` or a finite positive gradient-norm bound."""
    if text == "none":
        return text
    try:
        return cli.finite_positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite positive number or 'none', got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the flags: paths and numbers are validated here, before any work (one-line errors, exit 2)."""
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--policy",
        choices=sorted(TRAINERS),
        help="which policy to train (required unless --list)",
    )
    p.add_argument(
        "--timesteps",
        type=cli.positive_int,
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
        type=cli.output_file,
        default=None,
        metavar="PATH",
        help="checkpoint to write (default: the shipped one, policies/checkpoints/<policy>.zip for RL, "
        "<policy>_paper.pt for learned policies, the paper's 20-task protocol); "
        "the learning curve goes to <stem>_log.csv beside it",
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
    p.add_argument(
        "--threads",
        type=cli.positive_int,
        default=1,
        metavar="N",
        help="torch threads used while training (default: 1); part of what makes a run reproducible",
    )
    g = p.add_argument_group("learned policies (nn, nnm, mdr, cvx, dlm)")
    g.add_argument("--iterations", type=cli.positive_int, default=None, metavar="N",
                   help="full-batch Adam steps of each supervised stage, L_P / L_QP / L_NN (default: 1000; paper: 100)")
    g.add_argument("--lr", type=cli.finite_positive_float, default=None, help="learning rate of the supervised stages (default: 1e-3; paper: 1e-4)")
    g.add_argument("--sim-iterations", type=cli.positive_int, default=None, metavar="N",
                   help="Adam steps of the L_sim stage of dlm and nnm (default: 30; paper: 100)")
    g.add_argument("--sim-lr", type=cli.finite_positive_float, default=None, help="learning rate of the L_sim stage (default: 1e-4; paper: 1e-4)")
    g.add_argument("--weight-decay", type=cli.finite_non_negative_float, default=None,
                   help="decoupled (AdamW) weight decay of every stage (default: 0, plain Adam as in the paper)")
    g.add_argument("--grad-clip", type=grad_clip, default=None, metavar="NORM|none",
                   help="clip the global gradient norm (default: 1.0; 'none' for the paper's unclipped Adam)")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                   help="learning rate over each stage: constant (the paper's) or cosine decay to 0 (default: constant)")
    g.add_argument("--latent-dim", type=cli.positive_int, default=None, help="size of the video latent L^V (default: the paper's 75)")
    g.add_argument("--lstm-layers", type=cli.positive_int, default=None, help="depth of the bidirectional LSTM (default: the paper's 5)")
    g.add_argument("--sim-grad", choices=["fd", "autodiff"], default="fd",
                   help="gradient of L_sim: central differences through pymunk (fd, the paper's; default) "
                   "or the smoothed torch simulator (autodiff)")
    g.add_argument("--sim-eval-mode", action="store_true",
                   help="run L_sim with dropout off and batch-norm running statistics (default: train mode, "
                   "as the supervised stages)")
    g.add_argument("--train-split", type=cli.split_name_or_file, default=None, help="supervised split: a name or a split .npz (default: train)")
    g.add_argument("--batch-size", type=cli.positive_int, default=None, metavar="N",
                   help="tasks per Adam step, drawn at random (default: the whole split, as in the paper)")
    g.add_argument("--finetune-split", type=cli.split_name_or_file, default=None, help="L_sim split: a name or a split .npz (default: finetune)")
    g.add_argument("--init-checkpoint", type=cli.existing_file, default=None, metavar="PATH",
                   help="start from a checkpoint of a prefix policy (mdr for cvx, cvx for dlm, nn for nnm) and skip its stages")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="library verbosity, e.g. SB3's (default: 0)")
    p.add_argument("--list", action="store_true", help="list the trainable policies and exit")
    args = p.parse_args(argv)
    if not args.list and args.policy is None:
        p.error("--policy is required (trainable: " + ", ".join(sorted(TRAINERS)) + ")")
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
