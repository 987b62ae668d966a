"""The ``creditsd`` command: serve, worker, migrate, keys, accounts, grant, pricing, webhooks,
stripe, audit, reconcile, verify, export, members, limits, auto-topup and dev-upstream. Each
command loads the server's modules when it runs, so that ``--help`` is quick."""

from __future__ import annotations

# Importing a module registers its commands, in this order in the help.
from creditsd.cli import serving  # noqa: F401  # isort: skip
from creditsd.cli import (  # noqa: F401
    accounts,
    autotopup,
    integrations,
    keys,
    ledger,
    members,
    pricing,
)
from creditsd.cli.apps import app
from creditsd.cli.common import CLI_APP

__all__ = ["CLI_APP", "app", "main"]


def main() -> None:
    """Entry point of the ``creditsd`` command."""
    app()
