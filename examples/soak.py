#!/usr/bin/env python
"""Soak benchmark (not a test): play many episodes in one env and print the process's memory as it goes.

A leak of even a few kB per episode (a renderer surface, a pymunk body, an
info array kept alive) is invisible in a test of ten episodes and fatal in a
training run of a million; this plays N episodes with random actions, random
generated tasks and stored split tasks, and prints the resident set size (RSS)
every so often. Flat RSS after the warm-up is the pass mark; the last line
gives the growth from the first report to the last.

Examples:
    python examples/soak.py                          # 10,000 episodes, a report every 1,000
    python examples/soak.py --episodes 2000 --every 200 --render
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from dlm_gym import cli


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc; falls back to the peak RSS where /proc is missing)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def soak(episodes: int, every: int, seed: int, render: bool, split: str | None) -> list[tuple[int, float]]:
    """Play ``episodes`` episodes and return ``(episode, RSS MiB)`` at every report (printed as they come)."""
    from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv

    env = VideoPlanarManipEnv(render_mode="rgb_array" if render else None)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    reports = []
    start = time.perf_counter()
    print(f"{'episode':>8} {'RSS MiB':>9} {'episodes/s':>11}", flush=True)
    for episode in range(1, episodes + 1):
        if split is not None and episode % 2 == 0:  # every other episode replays a stored task
            env.reset(seed=int(rng.integers(2**31)), options={"split": split})
        else:
            env.reset(seed=int(rng.integers(2**31)))
        terminated = False
        while not terminated:
            _, _, terminated, _, _ = env.step(env.action_space.sample())
            if render:
                env.render()
        if episode % every == 0 or episode == episodes:
            rss = rss_mib()
            reports.append((episode, rss))
            print(f"{episode:>8} {rss:>9.1f} {episode / (time.perf_counter() - start):>11.1f}", flush=True)
    env.close()
    return reports


def split_or_none(text: str) -> str | None:
    """A split name or file, or ``none``."""
    return None if text == "none" else cli.split_name_or_file(text)


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=cli.positive_int, default=10_000, help="episodes to play (default: 10000)")
    p.add_argument(
        "--every",
        type=cli.positive_int,
        default=1_000,
        metavar="N",
        help="print the RSS every N episodes (default: 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the tasks and actions (default: 0)")
    p.add_argument("--render", action="store_true", help="also draw the rgb_array view after every step")
    p.add_argument(
        "--split",
        type=split_or_none,
        default="train",
        help="replay tasks of this split every other episode (default: train); 'none' for generated only",
    )
    args = p.parse_args(argv)
    try:
        reports = soak(args.episodes, args.every, args.seed, args.render, args.split)
    except cli.USER_ERRORS as exc:
        return cli.fail(exc)
    (first_episode, first), (last_episode, last) = reports[0], reports[-1]
    print(
        f"RSS {first:.1f} MiB after {first_episode} episodes, {last:.1f} MiB after {last_episode}: "
        f"{last - first:+.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
