"""The ledger: where every credit movement is written, and how.

**Accounts.** One per customer (its id, and aliases that name it too), and the system
accounts, named with a leading ``@`` (``@revenue``, ``@grants``, ``@stripe``…), whose
balances are derived from the transfers. A customer account stores its ``balance``, what
its open holds reserve (``held``), how far it may go below zero (``overdraft_limit``),
what forced debits took past that (``debt``) and its status; it may spend
``balance − held + overdraft_limit`` (:func:`models.available`), and the database's
``CHECK`` refuses any figure that breaks that rule.

**Transfers.** Immutable, double-entry, in integer minor units: ``amount`` from a debit
account to a credit account, of a ``kind`` (charge, grant, purchase, capture, expiry…),
under an app's idempotency key and the fingerprint of what was asked
(:func:`creditsd.kit.idempotency.fingerprint_of`). A correction is a new transfer.

**Lots** (:mod:`lots`). Every credit into a customer account fills a lot of a source
(purchase, promotion, subscription…) that may lapse; debits spend lots in a fixed order
(by priority, then soonest expiry, then age), and a lot past its expiry lapses by an
``expiry`` transfer.

**Holds.** Two-phase transfers: opening one reserves credits (pending), a capture posts
what the work cost (whole or in slices), a release voids it, an extension moves its
expiry, and expiry voids it when its time has come; a proxy key may pay for a hold
within its spend limit.

**The engine** (:mod:`posting`). It writes one batch of commands (:mod:`commands`: a
:class:`commands.Movement` for any transfer, which services build from their own typed
requests such as :class:`service.Charge`; :class:`commands.OpenHold`,
:class:`commands.CaptureHold`, :class:`commands.ReleaseHold`,
:class:`commands.ExtendHold`; :class:`commands.Sweep`) in its caller's transaction: take
each command's fingerprint, lock, claim the idempotency keys, apply in Python, write
set-based (:mod:`statements`, one statement per table per batch).
Group commit (:mod:`batching`) lets concurrent requests of a process share a batch.

**Who locks what, in which order.** A batch locks the customer accounts it names (or
whose holds it names) in id order, creating unknown ones when the policy allows; holds,
and the proxy keys that pay for them, are only ever changed by a batch that holds their
account's lock. One order, accounts then their holds, so two writers never wait for each
other in opposite orders. Reads take no lock.

**Around it.** :mod:`service` holds the typed requests (grant, adjustment, charge) and
the operations on single transfers: writing one, reading them back with their lots;
:mod:`accounts` opens, names, reads and freezes accounts; :mod:`verification` checks the
stored figures against the history and rebuilds them; :mod:`repository` and
:mod:`lot_repository` hold the reads; :mod:`export` the transfers as CSV rows. The audit
log (``creditsd.audit``) is written in the transaction of each change it records.
"""
