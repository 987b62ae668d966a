"""The simulation's lab: the migrated SQLite template and a work directory."""

from __future__ import annotations

import pytest

from tests.conftest import Databases
from tests.sim.run import Lab


@pytest.fixture
def lab(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """Where runs are played: each on its own copy of the template."""
    return Lab(databases.sqlite_template, tmp_path_factory.mktemp("sim"))
