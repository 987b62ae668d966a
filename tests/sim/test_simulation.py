"""The deterministic simulation: its seeds hold every invariant, and a seed replays exactly."""

from __future__ import annotations

import pytest

from tests.sim.actions import script
from tests.sim.run import STEPS, Lab, first_failure, seeds


async def test_every_seed_holds_the_invariants_after_every_step(lab: Lab) -> None:
    failure = await first_failure(lab, seeds())
    if failure is not None:
        pytest.fail(failure.report, pytrace=False)


async def test_a_seed_replays_to_the_same_event_log(lab: Lab) -> None:
    first = await lab.play(script(7, STEPS))
    again = await lab.play(script(7, STEPS))
    other = await lab.play(script(8, STEPS))

    assert first.problems == again.problems == ()
    assert first.log_hash == again.log_hash
    assert other.log_hash != first.log_hash
