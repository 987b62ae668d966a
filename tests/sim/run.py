"""Playing a seed, checking after every step, and shrinking what fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.sim.actions import Action, script
from tests.sim.checks import violations
from tests.sim.world import PRICES, World
from tests.stripe.fake import FakeStripe

STEPS = 60  # actions drawn per seed (deliveries they schedule come on top)
CI_SEEDS = 30  # the budget pytest runs by default: about a minute on two cores
SHRINK_RUNS = 200  # the most replays the shrinker may spend on one failure


@dataclass(frozen=True)
class Played:
    """A run's end: its event log's hash, or what broke and after which action."""

    log_hash: str
    problems: tuple[str, ...] = ()
    step: int = 0  # the action after which the problems showed

    @property
    def invariant(self) -> str | None:
        """What kind of problem came first (the shrinker keeps to it)."""
        return self.problems[0].split(":")[0] if self.problems else None


@dataclass(frozen=True)
class Lab:
    """What every run shares: the migrated SQLite file it copies and a directory."""

    template: Path
    workdir: Path

    async def play(self, actions: Iterable[Action]) -> Played:
        """Play ``actions`` on a fresh database, checking after each one."""
        with (
            tempfile.TemporaryDirectory(dir=self.workdir) as directory,
            FakeStripe(prices=PRICES) as stripe,
        ):
            world = World(Path(directory), self.template, stripe)
            await world.start()
            try:
                with world.faults():
                    for step, action in enumerate(actions, 1):
                        await world.play(action)
                        problems = await violations(world)
                        if problems:
                            return Played(world.hash(), tuple(problems), step)
            finally:
                await world.stop()
        return Played(world.hash())

    async def shrink(self, actions: list[Action], failed: Played) -> list[Action]:
        """The failing ``actions`` with as many removed as can be while the same kind of
        problem still shows: chunks first, then single actions (deterministic)."""
        actions = actions[: failed.step]
        runs = 0
        chunk = max(len(actions) // 2, 1)
        while runs < SHRINK_RUNS:
            start, removed = 0, False
            while start < len(actions) and runs < SHRINK_RUNS:
                candidate = actions[:start] + actions[start + chunk :]
                runs += 1
                played = await self.play(candidate)
                if played.invariant == failed.invariant:
                    actions, removed = candidate[: played.step], True
                else:
                    start += chunk
            if chunk == 1 and not removed:
                break
            chunk = max(chunk // 2, 1)
        return actions


def seeds() -> range:
    """The seeds to run: ``CREDITSD_SIM_SEED=<n>`` replays one, ``CREDITSD_SIM_SEEDS=<n>``
    runs seeds 0 to n-1 and ``CREDITSD_SIM_SEEDS=<a>-<b>`` seeds a to b inclusive; else the
    CI budget."""
    one = os.environ.get("CREDITSD_SIM_SEED")
    if one:
        return range(int(one), int(one) + 1)
    chosen = os.environ.get("CREDITSD_SIM_SEEDS", "")
    if "-" in chosen:
        first, last = chosen.split("-", 1)
        return range(int(first), int(last) + 1)
    return range(int(chosen or CI_SEEDS))


@dataclass(frozen=True)
class Failure:
    """The first seed that failed, and what it prints."""

    seed: int
    report: str


async def first_failure(lab: Lab, chosen: Iterable[int]) -> Failure | None:
    """Run seeds in turn; the first that fails, shrunk (None: all passed)."""
    for seed in chosen:
        actions = script(seed, STEPS)
        played = await lab.play(actions)
        if played.problems:
            return Failure(seed, await report(lab, seed, actions, played))
    return None


async def report(lab: Lab, seed: int, actions: list[Action], played: Played) -> str:
    """What a failing seed prints: itself, what broke, its shrunk actions, how to replay."""
    shrunk = await lab.shrink(actions, played)
    again = await lab.play(shrunk)
    listed = "\n".join(f"  {number:3} {action!r}" for number, action in enumerate(shrunk, 1))
    return (
        f"seed {seed} failed after action {played.step} of {len(actions)}:\n"
        + "\n".join(f"  {problem}" for problem in played.problems)
        + f"\nshrunk to {len(shrunk)} actions, which fail with:\n"
        + "\n".join(f"  {problem}" for problem in again.problems)
        + f"\n{listed}\n"
        + f"replay: CREDITSD_SIM_SEED={seed} .venv/bin/pytest -q tests/sim/test_simulation.py"
    )
