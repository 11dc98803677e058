#!/usr/bin/env python
"""Evaluate zoo policies on the dataset splits: object-trajectory loss (cm^2) with 95 % bootstrap intervals.

Every table shows the split's oracle floor (stored oracle losses) and the
do-nothing ceiling (noop) beside the chosen policies, ranked by mean loss,
with paired differences to noop and to the next-better policy.

Examples:
    python examples/evaluate.py --policy noop
    python examples/evaluate.py --policy all --workers 2 --json results/all.json
    python examples/evaluate.py --policy random --generated 20 --gif gifs/
    python examples/evaluate.py --policy dlm_paper nn_paper --split family --compare fig7.png
    python examples/evaluate.py --policy dlm_paper cvx_paper mdr_paper nn_paper nnm_paper --plot fig6.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import dlm_gym  # noqa: F401  (registers the env)
import policies
from dlm_gym import cli
from dlm_gym.datasets import available_splits
from policies.common.report import compare, format_table, neighbour_differences, results_metadata, task_sets

SB3_AGENTS = ("ppo", "ppo_scratch", "ppo_state")
"""Zoo agents stored as SB3 zips: ``--checkpoint-dir`` reads them as ``DIR/<name>.zip``."""

GIF_FRAME_MS = 600
"""How long each GIF frame (one keyframe) shows, in milliseconds."""


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--policy",
        nargs="+",
        default=["dlm"],
        help="policies to evaluate, zoo names (see --list), or 'all' for every registered policy (an alias "
        "played once), or your own class as package.module:Class or path/to/file.py:Class "
        "(any class with reset(obs, info) and act(obs), built without arguments); noop and the oracle floor are "
        "always shown beside them",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=cli.existing_dir,
        default=None,
        metavar="DIR",
        help="load the learned policies' checkpoints from DIR/<name>.pt and the SB3 agents' from DIR/<name>.zip "
        "(e.g. another training seed) instead of the shipped ones",
    )
    p.add_argument(
        "--split",
        nargs="*",
        default=None,
        help="dataset splits to evaluate on; give none to use only --generated tasks "
        "(default: every shipped split: %(choices)s)".replace(
            "%(choices)s", ", ".join(available_splits()) or "none shipped yet"
        ),
    )
    p.add_argument(
        "--generated",
        type=cli.non_negative_int,
        default=None,
        metavar="N",
        help="also evaluate on N freshly generated tasks (default: 20 when no split is shipped, else 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated tasks (default: 0)")
    p.add_argument(
        "--json", type=cli.output_file, default=None, metavar="PATH", help="write the results as JSON to PATH"
    )
    p.add_argument(
        "--gif",
        type=cli.output_dir,
        default=None,
        metavar="DIR",
        help=f"write one GIF per task and policy into DIR: the rgb_array view after reset and after each step, "
        f"{GIF_FRAME_MS} ms per frame, labelled with the policy and the episode's loss",
    )
    p.add_argument(
        "--plot",
        type=cli.output_file,
        nargs="?",
        const=Path("learning_curves.png"),
        default=None,
        metavar="PNG",
        help="draw the learning curves like the paper's Fig. 6 from the chosen policies' training logs "
        "(policies/checkpoints/<name>_log.csv): the executed loss against the iteration on train (solid) and the "
        "held-out split (dashed), one panel per kind of stage with shared axes, with the splits' oracle floor and "
        "noop levels; into PNG (default: learning_curves.png) and exit",
    )
    p.add_argument(
        "--compare",
        type=cli.output_file,
        default=None,
        metavar="PNG",
        help="draw a grid like the paper's Fig. 7 into PNG: one row per evaluated policy (and noop), one column "
        "per keyframe, each cell the simulated object with the target poses as ghosts and the fingers, for the "
        "task --compare-task of the first evaluated task set; rows are labelled with the policy and its loss",
    )
    p.add_argument(
        "--compare-task",
        type=cli.non_negative_int,
        default=0,
        metavar="INDEX",
        help="the task of --compare: its index in the first evaluated split (or the generated tasks; default: 0)",
    )
    p.add_argument(
        "--workers",
        type=cli.positive_int,
        default=1,
        metavar="N",
        help="evaluate each policy's tasks in N processes (same per-task results as 1; default: 1)",
    )
    p.add_argument("--list", action="store_true", help="list the registered policies and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    names = policies.available_policies()
    if args.list:
        print("\n".join(names))
        return 0
    if args.policy == ["all"]:
        chosen = policies.available_policies(aliases=False)
    else:
        chosen = list(dict.fromkeys(args.policy))
        for name in chosen:
            if policies.common.registry.is_policy_spec(name):  # a user's class: check it imports and builds now
                try:
                    policies.common.registry.load_policy_spec(name)
                except policies.PolicySpecError as exc:
                    return cli.fail(exc)
            elif name not in names:
                try:
                    policies.make_policy(name)
                except policies.UnknownPolicyError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
    kwargs = {}
    if args.checkpoint_dir is not None:
        from policies.dlm.architectures import ARCHITECTURES, PAPER_SUFFIX

        for name in chosen:
            # learned networks are DIR/<name>.pt, the SB3 agents DIR/<name>.zip (ppo_state: with <name>_obs_norm.npz)
            suffix = ".pt" if name.removesuffix(PAPER_SUFFIX) in ARCHITECTURES else ".zip" if name in SB3_AGENTS else ""
            if suffix:
                path = args.checkpoint_dir / f"{name}{suffix}"
                if not path.exists():
                    print(f"error: --checkpoint-dir has no {path.name} for {name}", file=sys.stderr)
                    return 2
                kwargs[name] = {"checkpoint": str(path)}

    if args.plot is not None:
        from policies.common.figures import plot_learning_curves
        from policies.common.paths import CHECKPOINT_DIR

        stems = [policies.common.registry.alias_target(n) or n for n in chosen]
        logs = [CHECKPOINT_DIR / f"{n}_log.csv" for n in stems if (CHECKPOINT_DIR / f"{n}_log.csv").exists()]
        if not logs:
            print(f"error: no training log for {', '.join(chosen)} in {CHECKPOINT_DIR}", file=sys.stderr)
            return 2
        print(f"wrote {plot_learning_curves(logs, args.plot)}")
        return 0

    shipped = available_splits()
    generated = args.generated if args.generated is not None else (0 if shipped else 20)
    splits = args.split if args.split is not None else shipped
    try:
        sets = task_sets(splits, generated=generated, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sets:
        print("error: nothing to evaluate on; pass --generated N or generate the splits", file=sys.stderr)
        return 2

    first_split, first_tasks = next(iter(sets.items()))
    if args.compare is not None and args.compare_task >= len(first_tasks):
        print(
            f"error: --compare-task {args.compare_task} is out of range: {first_split} has {len(first_tasks)} tasks "
            f"(0 to {len(first_tasks) - 1})",
            file=sys.stderr,
        )
        return 2

    try:
        rows, raw = compare(
            chosen,
            sets,
            progress=not args.no_progress,
            record=args.gif is not None,
            workers=args.workers,
            policy_kwargs=kwargs,
        )
    except (policies.CheckpointError, *cli.USER_ERRORS) as exc:  # a damaged or wrong-kind checkpoint
        return cli.fail(exc)
    print(format_table(rows))
    if args.json is not None:
        payload = {
            "meta": {
                **results_metadata(sets, generated_seed=args.seed if generated else None),
                "command": "python examples/evaluate.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "checkpoints": {name: kw["checkpoint"] for name, kw in kwargs.items()},
            },
            "results": rows,
            "neighbours": [d for split in sets for d in neighbour_differences(rows, split)],
            "tasks": {split: [t.name for t in tasks] for split, tasks in sets.items()},
        }
        from dlm_gym.atomic import atomic_write

        with atomic_write(args.json, "w") as handle:  # an interrupted run never leaves half a results file
            json.dump(payload, handle, indent=1)
        print(f"wrote {args.json}")
    if args.gif is not None:
        args.gif.mkdir(parents=True, exist_ok=True)
        for (name, _split), results in raw.items():
            for r in results:
                write_gif(
                    args.gif / f"{_file_stem(name)}_{_file_stem(r.task_name)}.gif",
                    r.frames,
                    f"{name}   loss {r.loss:.3g} cm^2",
                )
        print(f"wrote GIFs to {args.gif}/")
    if args.compare is not None:
        from policies.common.figures import compare_grid
        from policies.common.registry import make_policy_or_spec
        from policies.common.report import CEILING

        task = first_tasks[args.compare_task]
        episodes = {}
        try:
            for name in dict.fromkeys([*chosen, CEILING]):  # the rows of the table, noop last
                policy = make_policy_or_spec(name, **kwargs.get(name, {}))
                episodes[name] = policies.rollout(policy, task, record=True)
        except (policies.CheckpointError, *cli.USER_ERRORS) as exc:
            return cli.fail(exc)
        out = compare_grid(
            episodes,
            args.compare,
            title=f"{first_split} task {args.compare_task} ({task.name}): simulated object, "
            "target poses as ghosts (the keyframe's own bold), fingers",
        )
        print(f"wrote {out}")
    return 0


def _file_stem(text: str) -> str:
    """``text`` as a file name part: a policy spec (``pkg.mod:Class``, ``dir/file.py:Class``) or task name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "policy"


def label_frames(frames, text: str) -> list:
    """Copies of ``frames`` (H, W, 3) uint8 with ``text`` written on white under the view's caption (top left)."""
    import numpy as np
    import pygame

    pygame.font.init()
    font = pygame.font.Font(None, 22)
    out = []
    for frame in frames:
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(np.asarray(frame).transpose(1, 0, 2)))
        label = font.render(text, True, (0, 0, 0))
        box = label.get_rect(topleft=(8, 30))  # the env's "keyframe k/T" caption sits at (8, 8)
        surface.fill((255, 255, 255), box.inflate(6, 4))
        surface.blit(label, box)
        out.append(pygame.surfarray.array3d(surface).transpose(1, 0, 2))
    return out


def write_gif(path: Path, frames, label: str) -> None:
    """A looping GIF of ``frames``, each labelled, shown :data:`GIF_FRAME_MS` ms (Pillow takes milliseconds)."""
    import imageio.v3 as iio

    iio.imwrite(path, label_frames(frames, label), plugin="pillow", extension=".gif", duration=GIF_FRAME_MS, loop=0)


if __name__ == "__main__":
    sys.exit(main())
