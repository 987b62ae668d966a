"""What domain services need of a running ledger, without importing the in-process API.

No database engine: services work in the transaction an entry point hands them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from creditsd.config import Settings
from creditsd.kit.money import Money
from creditsd.ledger.posting import Policy


class Runtime(Protocol):
    """A ledger's settings, rules and clock (``creditsd.inprocess.Ledger`` is one)."""

    @property
    def settings(self) -> Settings:
        """The configuration it runs with."""

    @property
    def policy(self) -> Policy:
        """The rules the posting engine follows."""

    @property
    def money(self) -> Money:
        """How amounts are converted at the ledger's scale."""

    def now(self) -> datetime:
        """The ledger's clock."""
