#!/usr/bin/env python
"""Export a split's oracle demonstrations, or a zoo policy's rollouts on it, to a Minari dataset (offline RL).

Without --policy, each episode replays the split's stored MIQP oracle plan
through the env as float32 actions (what the miqp policy plays), so its
object-trajectory loss is the split's stored oracle_loss exactly. With
--policy NAME, each episode is that policy's rollout. One episode per task,
reset with options {"split": ..., "index": i}, every info entry recorded,
images stored losslessly. Needs the minari extra: pip install -e '.[minari]'.

Examples:
    python examples/export_minari.py --split family                      # dlm_gym/family-oracle-v0
    python examples/export_minari.py --split test --policy noop --tasks 10 --data-path /tmp/minari
    python -c "import minari; print(minari.load_dataset('dlm_gym/family-oracle-v0', ...))"  # with the same path
"""

from __future__ import annotations

import argparse
import sys

from dlm_gym import cli
from dlm_gym.datasets import MissingExtraError


def _parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--split",
        type=cli.split_name_or_file,
        default="family",
        help="a shipped split's name or a split .npz file (default: family)",
    )
    p.add_argument(
        "--policy",
        default=None,
        help="record this zoo policy's rollouts (e.g. noop, miqp, dlm); default: the split's stored oracle plans",
    )
    p.add_argument(
        "--dataset-id",
        default=None,
        help="Minari dataset id, (namespace/)name-vN (default: dlm_gym/<split>-<oracle or policy>-v0)",
    )
    p.add_argument(
        "--data-path",
        type=cli.output_dir,
        default=None,
        help="Minari datasets root to write into (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)",
    )
    p.add_argument("--tasks", type=cli.positive_int, default=None, help="export only the first N tasks (default: all)")
    p.add_argument(
        "--obs-type",
        choices=("pixels", "state"),
        default="pixels",
        help="observations of the oracle demonstrations (default: pixels; a --policy uses its own)",
    )
    p.add_argument("--author", default=None, help="dataset author (Minari metadata)")
    p.add_argument("--author-email", default=None, help="dataset author's contact (Minari metadata)")
    p.add_argument("--code-permalink", default=None, help="link to the code version that made it (Minari metadata)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from dlm_gym.minari_export import ExportError, export_split, import_minari

        import_minari()
    except MissingExtraError as exc:
        return cli.fail(exc)
    errors: tuple[type[Exception], ...] = (*cli.USER_ERRORS, ExportError, MissingExtraError)
    policy = None
    try:
        if args.policy is not None:
            import policies

            errors = (*errors, policies.PolicyError)
            policy = policies.make_policy(args.policy)
        from dlm_gym.datasets import load_split

        size = len(load_split(args.split))  # cached: export_split reads it again for free
        indices = None if args.tasks is None else range(min(args.tasks, size))
        export = export_split(
            args.split,
            args.dataset_id,
            policy=policy,
            indices=indices,
            obs_type=args.obs_type,
            data_path=args.data_path,
            author=args.author,
            author_email=args.author_email,
            code_permalink=args.code_permalink,
            progress=not args.no_progress,
        )
    except errors as exc:
        return cli.fail(exc)
    dataset = export.dataset
    print(
        f"{dataset.spec.dataset_id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps, "
        f"object-trajectory loss mean {export.losses.mean():.3f} cm^2 -> {dataset.spec.data_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
