"""creditsd: a self-hosted credits ledger and usage-billing service for AI products."""

from __future__ import annotations

__version__ = "0.1.0"
