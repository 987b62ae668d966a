"""Subscription plans: each billing period grants its allowance once, lapsing at its end."""
