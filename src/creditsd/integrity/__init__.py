"""Integrity you can watch: the ledger's invariants checked while it runs.

:func:`find_violations` checks every promise the ledger makes and names what is broken:
each balance equals its transfers, ``held`` equals its open holds, lots add up to the
balance, no open hold is past its expiry, no hold captured more than it reserved, one
grant per Stripe payment and per allowance period, no outbox message pending past its
retry budget, and the checkpoint chain still matches the transfers (tamper evidence,
:mod:`creditsd.integrity.checkpoints`). The scheduled run (:mod:`creditsd.integrity.service`)
checks incrementally, records each drift once in the database (logged, counted, sent as
``ledger.drift_detected``, audited) and closes it when it is gone or repaired.
"""

from creditsd.integrity.checks import find_violations
from creditsd.integrity.models import INVARIANTS, Violation

__all__ = ["INVARIANTS", "Violation", "find_violations"]
