"""Holds: reserve an estimate, then capture the actual cost, release, or let it expire."""
