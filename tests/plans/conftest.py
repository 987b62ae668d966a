"""Allowances come from Clerk and from Stripe: both sets of fixtures serve here."""

from __future__ import annotations

from tests.clerk.conftest import clerk_api, clerk_ledger
from tests.stripe.conftest import fake

__all__ = ["clerk_api", "clerk_ledger", "fake"]
