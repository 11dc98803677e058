#!/usr/bin/env python
"""Render the README's result tables from evaluation JSON files, so that they cannot drift from the code.

Reads the files that ``examples/evaluate.py --json`` wrote and prints the
markdown; with ``--update README.md`` it replaces the blocks between
``<!-- BEGIN name -->`` and ``<!-- END name -->`` in the README instead.

Blocks:
    table1      every policy on every split: mean loss (cm^2) with its 95 % bootstrap interval
    resolved    per held-out split, the paired differences to noop and between neighbours, resolved or not
    seeds       the paper-protocol learned policies over their training seeds (needs --seeds)
    large_seeds the large-data learned policies over their training seeds (needs --large-seeds)
    exploit     the interior-finger script against its surface twin (needs --exploit, from exploit_check.py)
    targets     the large-data DLM against issue 10's targets on the xl splits: dlm, dlm - cvx and
                dlm - oracle (paired), dlm / nn, vision_miqp / miqp
    finetune    what each fine-tuning does to its start on the xl splits: L_sim (nn -> nnm, cvx -> dlm)
                and PPO on the reward (nn -> ppo), paired differences
    rl_seeds    the RL agents against issue 13's targets on family_xl, per training seed (needs
                --rl-seeds): ppo, ppo / noop, ppo - nn (paired), ppo_state, ppo_state - noop (paired)

Example (the README's own):
    python examples/readme_tables.py --results docs/results/table1.json --exploit docs/results/exploit.json \\
        --seeds docs/results/table1.json docs/results/paper_seed1.json docs/results/paper_seed2.json \\
        --large-seeds docs/results/table1.json docs/results/large_seed1.json docs/results/large_seed2.json \\
        --rl-seeds docs/results/table1.json docs/results/rl_seed1.json docs/results/rl_seed2.json \\
        --update README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from policies.common.report import FLOOR
from policies.dlm.architectures import ARCHITECTURES, PAPER_SUFFIX


def _load(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
        payload["results"], payload["meta"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {path} is not an evaluate.py --json results file ({exc})") from None
    return payload


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['loss_mean']:.2f} [{row['loss_ci_low']:.2f}, {row['loss_ci_high']:.2f}]"


def table1(payload: dict) -> str:
    rows = payload["results"]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    cell = {(r["policy"], r["split"]): r for r in rows}
    order_split = next((s for s in ("family_xl", "family") if s in splits), splits[0])
    names = sorted(
        {r["policy"] for r in rows},
        key=lambda p: (cell.get((p, order_split), {"loss_mean": np.inf})["loss_mean"], p),  # ties by name: stable
    )
    label = {FLOOR: "oracle (floor)", "noop": "noop (ceiling)"}
    out = [
        "| policy | "
        + " | ".join(f"{s} ({cell[(names[0], s)]['n'] if (names[0], s) in cell else '?'})" for s in splits)
        + " |",
        "|---|" + "---|" * len(splits),
    ]
    for p in names:
        out.append(f"| {label.get(p, p)} | " + " | ".join(_cell(cell.get((p, s))) for s in splits) + " |")
    return "\n".join(out)


def _diff(d: dict) -> str:
    mark = "resolved" if (d["ci_low"] > 0 or d["ci_high"] < 0) else "not resolved"
    return f"{d['mean']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] ({mark})"


def resolved(payload: dict) -> str:
    rows = payload["results"]
    splits = [s for s in dict.fromkeys(r["split"] for r in rows) if s.endswith("_xl")] or list(
        dict.fromkeys(r["split"] for r in rows)
    )
    out = ["| split | policy | vs noop | vs next better (ranked by mean) |", "|---|---|---|---|"]
    for split in splits:
        steps = {d["worse"]: d for d in payload.get("neighbours", []) if d["split"] == split}
        ranked = sorted((r for r in rows if r["split"] == split), key=lambda r: r["loss_mean"])
        for i, r in enumerate(ranked):
            vs_noop = _diff(r["vs_noop"]) if "vs_noop" in r else "-"
            step = f"{_diff(steps[r['policy']])} vs {ranked[i - 1]['policy']}" if r["policy"] in steps else "-"
            out.append(f"| {split} | {r['policy']} | {vs_noop} | {step} |")
    return "\n".join(out)


def seeds(payloads: list[dict], suffix: str = PAPER_SUFFIX) -> str:
    """Per learned policy of a protocol (``_paper`` or the plain large-data names), the mean over seeds."""
    learned = [name + suffix for name in ARCHITECTURES]
    dlm, nn = "dlm" + suffix, "nn" + suffix
    per_seed = []
    for payload in payloads:
        per_seed.append({(r["policy"], r["split"]): r for r in payload["results"]})
    splits = [
        s
        for s in dict.fromkeys(r["split"] for r in payloads[0]["results"])
        if s.endswith("_xl") or s in ("test", "family")
    ]
    splits = [s for s in splits if all((dlm, s) in c for c in per_seed)]
    if not splits:
        raise SystemExit(f"error: the seed files hold no {dlm} results on a shared split")
    out = ["| policy | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]

    def fmt(values, digits=1):
        v = np.array(values)
        return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} ({', '.join(f'{x:.{digits}f}' for x in v)})"

    for p in learned:
        if not all((p, splits[0]) in c for c in per_seed):
            continue
        out.append(f"| {p} | " + " | ".join(fmt([c[(p, s)]["loss_mean"] for c in per_seed]) for s in splits) + " |")
    if all((nn, splits[0]) in c for c in per_seed):
        out.append(
            f"| {dlm} / {nn} | "
            + " | ".join(fmt([c[(dlm, s)]["loss_mean"] / c[(nn, s)]["loss_mean"] for c in per_seed], 2) for s in splits)
            + " |"
        )
    out.append("| noop | " + " | ".join(f"{per_seed[0][('noop', s)]['loss_mean']:.2f}" for s in splits) + " |")
    return "\n".join(out)


def _signed(d) -> str:
    """A paired difference as ``+m [+lo, +hi]``."""
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def rl_seeds(payloads: list[dict], split: str = "family_xl") -> str:
    """Per training seed of the RL agents, on ``split``: ``ppo`` against ``noop`` and against ``nn`` (its
    start), ``ppo_state`` against ``noop``; paired intervals from the per-task losses (bootstrap seed 0)."""
    from policies.common.statistics import paired_difference

    out = [
        f"| seed ({split}) | ppo | ppo / noop | ppo - nn (paired) | ppo_state | ppo_state - noop (paired) |",
        "|---|---|---|---|---|---|",
    ]
    means: dict[str, list[float]] = {"ppo": [], "ratio": [], "state": []}
    for i, payload in enumerate(payloads):
        rows = {(r["policy"], r["split"]): r for r in payload["results"]}
        need = [(p, split) for p in ("ppo", "ppo_state", "nn", "noop")]
        missing = [p for p, _ in need if (p, split) not in rows]
        if missing:
            raise SystemExit(f"error: seed file {i} has no {', '.join(missing)} on {split}")
        ppo, state, nn, noop = (np.asarray(rows[(p, split)]["losses"]) for p in ("ppo", "ppo_state", "nn", "noop"))
        means["ppo"].append(ppo.mean())
        means["ratio"].append(ppo.mean() / noop.mean())
        means["state"].append(state.mean())
        out.append(
            f"| {i} | {rows[('ppo', split)]['loss_mean']:.2f} [{rows[('ppo', split)]['loss_ci_low']:.2f}, "
            f"{rows[('ppo', split)]['loss_ci_high']:.2f}] | {ppo.mean() / noop.mean():.2f} | "
            f"{_signed(paired_difference(ppo, nn))} | {state.mean():.2f} | {_signed(paired_difference(state, noop))} |"
        )
    m = {k: np.array(v) for k, v in means.items()}
    out.append(
        f"| mean ± std | {m['ppo'].mean():.2f} ± {m['ppo'].std(ddof=1):.2f} | "
        f"{m['ratio'].mean():.2f} ± {m['ratio'].std(ddof=1):.2f} | | "
        f"{m['state'].mean():.2f} ± {m['state'].std(ddof=1):.2f} | |"
    )
    return "\n".join(out)


FINETUNING = (("nn", "nnm", "L_sim (finite differences)"), ("nn", "ppo", "PPO on the reward"), ("cvx", "dlm", "L_sim"))
"""(start, fine-tuned, by what): the fine-tuning stages of the zoo that start from a shipped policy."""


def finetune(payload: dict) -> str:
    """Each fine-tuning's paired effect on its start, per xl split (bootstrap seed 0)."""
    from policies.common.statistics import paired_difference

    rows = {(r["policy"], r["split"]): r for r in payload["results"]}
    splits = [s for s in ("family_xl", "test_xl", "smooth_xl") if all((p, s) in rows for p, _, _ in FINETUNING)]
    if not splits:
        raise SystemExit(
            "error: the results hold no split with " + ", ".join(sorted({p for f in FINETUNING for p in f[:2]}))
        )
    out = [
        "| start -> fine-tuned | by | " + " | ".join(f"{s}: before -> after (after - before)" for s in splits) + " |"
    ]
    out.append("|---|---|" + "---|" * len(splits))
    for start, tuned, how in FINETUNING:
        cells = []
        for split in splits:
            a, b = rows[(start, split)], rows[(tuned, split)]
            d = paired_difference(b["losses"], a["losses"])
            cells.append(f"{a['loss_mean']:.2f} -> {b['loss_mean']:.2f} ({_signed(d)})")
        out.append(f"| {start} -> {tuned} | {how} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def targets(payload: dict) -> str:
    """dlm's targets per held-out split, from the per-task losses (paired intervals, bootstrap seed 0)."""
    from policies.common.statistics import paired_difference

    rows = {(r["policy"], r["split"]): r for r in payload["results"]}
    splits = [s for s in ("family_xl", "test_xl", "smooth_xl") if ("dlm", s) in rows]
    if not splits:
        raise SystemExit("error: the results hold no dlm on an xl split")

    def diff(a: str, b: str, split: str) -> str:
        return _signed(paired_difference(rows[(a, split)]["losses"], rows[(b, split)]["losses"]))

    out = [
        "| split | dlm (target: <= 3, smooth <= 5) | dlm - cvx (target: < 0) | dlm - oracle "
        "| dlm / nn (target: <= 0.6) | vision_miqp / miqp (target: <= 2) |",
        "|---|---|---|---|---|---|",
    ]
    for split in splits:
        ratio = rows[("dlm", split)]["loss_mean"] / rows[("nn", split)]["loss_mean"]
        vision = rows[("vision_miqp", split)]["loss_mean"] / rows[("miqp", split)]["loss_mean"]
        out.append(
            f"| {split} | {_cell(rows[('dlm', split)])} | {diff('dlm', 'cvx', split)} | {diff('dlm', FLOOR, split)} "
            f"| {ratio:.2f} | {vision:.2f} |"
        )
    return "\n".join(out)


def exploit(figures: dict) -> str:
    def f(key):
        d = figures[key]
        return f"{d['mean']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"

    return "\n".join(
        [
            f"| on {figures['tasks']} {figures['split']} tasks (cm^2, mean [95% CI]) | loss |",
            "|---|---|",
            f"| interior-finger script (both fingers inside the object, 4.9 N up) | {f('interior')} |",
            f"| the same points moved onto the surface at the target poses | {f('surface')} |",
            f"| paired difference, interior - surface | {f('interior_minus_surface')} |",
            f"| noop | {f('noop')} |",
        ]
    )


def update(readme: Path, blocks: dict[str, str]) -> None:
    text = readme.read_text()
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"error: {readme} has no '<!-- BEGIN {name} -->' ... '<!-- END {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)  # noqa: B023  (used at once)
    from dlm_gym.atomic import atomic_write

    with atomic_write(readme, "w") as handle:
        handle.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--results",
        type=Path,
        required=True,
        metavar="JSON",
        help="an evaluate.py --json file with every policy (table1 and resolved)",
    )
    p.add_argument(
        "--seeds",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="one evaluate.py --json file per training seed of the learned policies (the seeds block)",
    )
    p.add_argument(
        "--large-seeds",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="one evaluate.py --json file per training seed of the large-data models (the large_seeds block)",
    )
    p.add_argument(
        "--rl-seeds",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="one evaluate.py --json file per training seed of ppo and ppo_state, with nn (the rl_seeds block)",
    )
    p.add_argument(
        "--exploit",
        type=Path,
        default=None,
        metavar="JSON",
        help="the figures of examples/exploit_check.py --json (the exploit block)",
    )
    p.add_argument(
        "--update",
        type=Path,
        default=None,
        metavar="README",
        help="rewrite the marked blocks of this file instead of printing them",
    )
    args = p.parse_args(argv)
    for path in [
        args.results,
        *(args.seeds or []),
        *(args.large_seeds or []),
        *(args.rl_seeds or []),
        *([args.exploit] if args.exploit else []),
    ]:
        if not path.is_file():
            p.error(f"{path} does not exist; write it with examples/evaluate.py --json")
    payload = _load(args.results)
    blocks = {"table1": table1(payload), "resolved": resolved(payload)}
    if any(r["policy"] == "dlm" and r["split"].endswith("_xl") for r in payload["results"]):
        blocks["targets"] = targets(payload)
    if all(any(r["policy"] == p for r in payload["results"]) for f in FINETUNING for p in f[:2]):
        blocks["finetune"] = finetune(payload)
    if args.seeds:
        blocks["seeds"] = seeds([_load(s) for s in args.seeds])
    if args.large_seeds:
        blocks["large_seeds"] = seeds([_load(s) for s in args.large_seeds], suffix="")
    if args.rl_seeds:
        blocks["rl_seeds"] = rl_seeds([_load(s) for s in args.rl_seeds])
    if args.exploit:
        try:
            blocks["exploit"] = exploit(json.loads(args.exploit.read_text()))
        except (ValueError, KeyError) as exc:
            p.error(f"{args.exploit} is not an exploit_check.py --json file ({exc})")
    if args.update is not None:
        if not args.update.is_file():
            p.error(f"{args.update} does not exist")
        update(args.update, blocks)
        print(f"updated {', '.join(blocks)} in {args.update}")
    else:
        for name, body in blocks.items():
            print(f"<!-- {name} -->\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
