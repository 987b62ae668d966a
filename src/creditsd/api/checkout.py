"""Buying credits as an entry point, for the API and the billing page alike: the account
and the Stripe customer it pays as, found in one transaction and, on a first purchase,
made at Stripe between two."""

from __future__ import annotations

from creditsd.inprocess import Ledger
from creditsd.stripe import purchases
from creditsd.stripe import repository as repo
from creditsd.stripe.billing import StripeBilling


async def paying_customer(
    ledger: Ledger, billing: StripeBilling, account_name: str
) -> tuple[str, str]:
    """The account ``account_name`` names (created when the policy allows) and the one
    Stripe customer it pays as (made on its first purchase). A frozen or closed account
    buys nothing (409): its credits could not be spent."""
    account_id, customer = await ledger.database.write(
        lambda conn, now: purchases.paying_account(conn, account_name, ledger.policy, now)
    )
    if customer is None:
        made = await billing.create_customer(account_id)
        customer = await ledger.database.write(
            lambda conn, now: repo.remember_customer(conn, account_id, made, now)
        )
    return account_id, customer
