"""creditsd: a self-hosted credits ledger and usage-billing service for AI products.

``creditsd.Ledger`` is the in-process API (``creditsd.inprocess``), imported on first use
so that ``creditsd.client``, the SDK, loads nothing of the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from creditsd.inprocess import Ledger

__all__ = ["Ledger", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> type[Ledger]:
    if name == "Ledger":
        from creditsd.inprocess import Ledger

        return Ledger
    raise AttributeError(f"module 'creditsd' has no attribute {name!r}")


del TYPE_CHECKING  # the package's namespace stays what the SDK test expects
