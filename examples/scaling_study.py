"""Loss against training-set size: nn, cvx and dlm (the large-data protocol) trained on N corpus tasks.

For each N in ``--sizes`` (default 20, 200, 2,000, 20,000), with one budget for every N:

1. the keypoint pose network on the first N corpus tasks (``examples/encoder_study.py
   --max-train-tasks N --max-steps --pose-steps``);
2. ``examples/train_large.py`` on it: the contact-mode classifier on the first ``min(N, 4000)``
   tasks, L_QP on ``min(N, 2000)``, L_sim on the 300 corpus tasks that follow the classifier's (a
   separate fine-tuning set, as the paper's finetune split, the same size for every N), every
   stage's length chosen on validation tasks of our own seeds; it writes ``cvx.pt`` and ``dlm.pt``;
3. ``nn`` (``examples/train.py --policy nn``) on the same N tasks, in minibatches of 64;
4. ``examples/evaluate.py`` of the three on ``--eval-split`` (held out: read, never tuned on).

Each step is skipped when its output exists, so an interrupted study resumes where it stopped.
Writes ``--out``/``<N>/`` (the runs), ``results.json`` and the figure ``--figure`` (mean loss
with its 95 % interval against N, log scale, with the split's oracle floor and noop level).

Example (the README's figure; about 1.5 hours of one core per size)::

    python examples/scaling_study.py --out runs/scaling --figure docs/figures/scaling.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dlm_gym import cli

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("nn", "cvx", "dlm")


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(cli.positive_int(t.strip()) for t in text.split(",") if t.strip())
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size")
    return sizes


@dataclasses.dataclass(frozen=True)
class Config:
    """The study's one configuration; every field is a flag."""

    corpus: Path = dataclasses.field(
        default=Path("runs/corpus"), metadata={"help": "training corpus directory", "type": cli.existing_dir}
    )
    sizes: tuple[int, ...] = dataclasses.field(
        default=(20, 200, 2000, 20000), metadata={"help": "comma list of training-set sizes N", "type": _sizes}
    )
    out: Path = dataclasses.field(
        default=Path("runs/scaling"), metadata={"help": "output folder", "type": cli.output_dir}
    )
    figure: Path = dataclasses.field(
        default=Path("docs/figures/scaling.png"), metadata={"help": "the figure (PNG)", "type": cli.output_file}
    )
    pose_steps: int = dataclasses.field(
        default=1500, metadata={"help": "pose-network steps (batch 64) for every N", "type": cli.positive_int}
    )
    nn_iterations: int = dataclasses.field(
        default=1000, metadata={"help": "nn Adam steps (batch 64) for every N", "type": cli.positive_int}
    )
    mode_sim_epochs: int = dataclasses.field(
        default=20, metadata={"help": "train_large --mode-sim-epochs", "type": cli.non_negative_int}
    )
    sim_epochs: int = dataclasses.field(
        default=4, metadata={"help": "train_large --sim-epochs (force head)", "type": cli.non_negative_int}
    )
    shipped: Path | None = dataclasses.field(
        default=None,
        metadata={
            "help": "an evaluate.py --json file of the shipped nn, cvx and dlm (trained on the whole 20,000-task "
            "corpus with their own, longer budgets), drawn as hollow markers at N = 20,000 for reference",
            "type": cli.existing_file,
        },
    )
    eval_split: str = dataclasses.field(
        default="family_xl", metadata={"help": "held-out split the figure reports", "type": cli.split_name_or_file}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "training seed", "type": cli.non_negative_int})
    progress: bool = dataclasses.field(default=False, metadata={"help": "print a line per step"})


def parse_config(argv: Sequence[str] | None = None) -> Config:
    p = cli.dataclass_parser(Config, __doc__)
    return Config(**vars(p.parse_args(argv)))


def _run(args: list[str], log: Path) -> None:
    """Run a script of this repository; a failure stops the study, naming its log."""
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed (exit {done.returncode}); see {log}")


def subset_split(cfg: Config, n: int, path: Path) -> None:
    """The first ``n`` corpus tasks as one split file (the nn's --train-split)."""
    import numpy as np

    from dlm_gym.datasets import load_corpus, save_split

    corpus = load_corpus(cfg.corpus)
    parts, seen = [], 0
    for k in range(corpus.n_shards):
        shard = corpus.shard(k)
        parts.append(shard[: n - seen])
        seen += len(parts[-1])
        if seen >= n:
            break
    if seen < n:
        raise ValueError(f"{cfg.corpus} has {len(corpus)} tasks, fewer than N = {n}")
    tasks = [t for p in parts for t in p.tasks]

    def cat(attr):
        return np.concatenate([getattr(p, attr) for p in parts])

    params = {k: np.concatenate([p.params[k] for p in parts]) for k in parts[0].params}
    meta = {**parts[0].meta, "name": f"corpus_first_{n}", "source": f"first {n} tasks of {cfg.corpus}"}
    save_split(
        path,
        tasks,
        cat("videos"),
        cat("commands"),
        cat("oracle_cost"),
        cat("oracle_solve_s"),
        cat("oracle_loss"),
        params,
        meta,
    )


def run_size(cfg: Config, n: int, say) -> Path:
    """Train and evaluate the three policies at N tasks; returns the evaluation JSON."""
    folder = cfg.out / str(n)
    folder.mkdir(parents=True, exist_ok=True)
    pose = folder / "pose" / "keypoint.pt"
    if not pose.exists():
        say(f"[N={n}] pose network ({cfg.pose_steps} steps)")
        _run(
            [
                "examples/encoder_study.py",
                "--models", "keypoint", "--moments-tasks", "0", "--train-seconds", "1000000000",
                "--max-steps", str(cfg.pose_steps), "--max-train-tasks", str(n), "--eval-every", "1000000000",
                "--seed", str(cfg.seed), "--corpus", str(cfg.corpus), "--out", str(folder / "pose"), "--no-progress",
            ],
            folder / "pose.log",
        )  # fmt: skip
    if not (folder / "dlm.pt").exists():
        say(f"[N={n}] train_large")
        mode = min(n, 4000)
        _run(
            [
                "examples/train_large.py", "--pose", str(pose), "--corpus", str(cfg.corpus),
                "--mode-tasks", str(mode), "--qp-tasks", str(min(n, 2000)), "--sim-tasks", "300",
                "--mode-sim-epochs", str(cfg.mode_sim_epochs), "--sim-epochs", str(cfg.sim_epochs),
                "--seed", str(cfg.seed), "--out", str(folder),
            ],
            folder / "train_large.log",
        )  # fmt: skip
    if not (folder / "nn.pt").exists():
        split = folder / "train.npz"
        if not split.exists():
            subset_split(cfg, n, split)
        say(f"[N={n}] nn ({cfg.nn_iterations} iterations)")
        _run(
            [
                "examples/train.py", "--policy", "nn", "--iterations", str(cfg.nn_iterations),
                "--train-split", str(split), "--batch-size", "64", "--seed", str(cfg.seed), "--threads", "1",
                # its curve only at the end: an executed evaluation of all N training tasks every 50 steps
                # takes 100 s at N = 20,000 (it is logging, not training)
                "--eval-every", str(cfg.nn_iterations),
                "--no-progress", "--out", str(folder / "nn.pt"),
            ],
            folder / "nn.log",
        )  # fmt: skip
    result = folder / "eval.json"
    if not result.exists():
        say(f"[N={n}] evaluate on {cfg.eval_split}")
        _run(
            [
                "examples/evaluate.py", "--policy", *POLICIES, "--checkpoint-dir", str(folder),
                "--split", cfg.eval_split, "--workers", "1", "--no-progress", "--json", str(result),
            ],
            folder / "eval.log",
        )  # fmt: skip
    return result


def figure(cfg: Config, results: dict[int, dict], shipped: dict | None = None) -> dict:
    """Plot the study and return its table: per N and policy, mean loss and 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table: dict = {"split": cfg.eval_split, "sizes": list(results), "policies": {}}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours: dict[str, str] = {}
    reference = {}
    for n, payload in results.items():
        for row in payload["results"]:
            if row["split"] != cfg.eval_split:
                continue
            entry = [row["loss_mean"], row["loss_ci_low"], row["loss_ci_high"]]
            if row["policy"] in POLICIES:
                table["policies"].setdefault(row["policy"], {})[n] = entry
            else:
                reference[row["policy"]] = row["loss_mean"]
    for name in POLICIES:
        points = table["policies"].get(name, {})
        ns = sorted(points)
        mean = [points[n][0] for n in ns]
        err = [[points[n][0] - points[n][1] for n in ns], [points[n][2] - points[n][0] for n in ns]]
        bars = ax.errorbar(ns, mean, yerr=err, marker="o", capsize=3, label=name)
        colours[name] = bars[0].get_color()
    from policies.common.report import FLOOR

    if shipped is not None:
        rows = {r["policy"]: r for r in shipped["results"] if r["split"] == cfg.eval_split}
        table["shipped"] = {}
        for name in POLICIES:
            if name in rows:
                r = rows[name]
                table["shipped"][name] = [r["loss_mean"], r["loss_ci_low"], r["loss_ci_high"]]
                ax.errorbar([20000], [r["loss_mean"]], yerr=[[r["loss_mean"] - r["loss_ci_low"]],
                            [r["loss_ci_high"] - r["loss_mean"]]], marker="o", mfc="none", capsize=3,
                            color=colours.get(name), linestyle="none",
                            label=f"{name}, shipped (20,000 tasks, longer budget)")  # fmt: skip
    for label, style in (("noop", "--"), (FLOOR, ":")):
        if label in reference:
            ax.axhline(reference[label], color="grey", linestyle=style, label=f"{label} {reference[label]:.2f}")
    table["reference"] = reference
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training tasks N (oracle-labelled)")
    ax.set_ylabel(f"object-trajectory loss on {cfg.eval_split} (cm$^2$)")
    ax.set_title("loss against training-set size (mean, 95% CI)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    cfg.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(cfg.figure, dpi=120)
    plt.close(fig)
    return table


def markdown(table: dict) -> str:
    """The study as a markdown table: per N, each policy's mean loss with its 95 % interval."""

    def cell(entry) -> str:
        return "-" if entry is None else f"{entry[0]:.2f} [{entry[1]:.2f}, {entry[2]:.2f}]"

    rows = [f"| training tasks N | {' | '.join(POLICIES)} |", "|---|" + "---|" * len(POLICIES)]
    for n in table["sizes"]:
        rows.append(f"| {n:,} | " + " | ".join(cell(table["policies"].get(p, {}).get(n)) for p in POLICIES) + " |")
    for label, entries in (("shipped (20,000, longer budget)", table.get("shipped")),):
        if entries:
            rows.append(f"| {label} | " + " | ".join(cell(entries.get(p)) for p in POLICIES) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    say = print if cfg.progress else (lambda *a, **k: None)
    start = time.perf_counter()
    try:
        results = {}
        for n in cfg.sizes:
            path = run_size(cfg, n, say)
            results[n] = json.loads(path.read_text())
    except (RuntimeError, ValueError, *cli.USER_ERRORS) as exc:
        return cli.fail(exc)
    shipped = json.loads(cfg.shipped.read_text()) if cfg.shipped is not None else None
    table = figure(cfg, results, shipped)
    table["config"] = {k: str(v) for k, v in dataclasses.asdict(cfg).items()}
    table["seconds"] = time.perf_counter() - start
    (cfg.out / "results.json").write_text(json.dumps(table, indent=1))
    print(markdown(table))
    say(f"wrote {cfg.figure} and {cfg.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
