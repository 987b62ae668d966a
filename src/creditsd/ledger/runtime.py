"""What domain services need of a running ledger, without importing the in-process API."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from creditsd.config import Settings
from creditsd.ledger.posting import Policy
from creditsd.money import Money


class Runtime(Protocol):
    """A ledger's database, settings, rules and clock (``creditsd.Ledger`` is one)."""

    @property
    def engine(self) -> AsyncEngine:
        """The database."""

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
