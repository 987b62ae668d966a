"""Team wallets: an account's members and the spend limits on it.

A wallet is a customer account whose credits several people spend: each member (an id
of the app's choosing, such as a Clerk user id) is named on the writes made for them,
which debit the wallet and record the member. Spend limits cap what the wallet, a
member, an app or a proxy key spends from it per day, week, month or lifetime; the
posting engine checks and counts them under the account's lock
(:mod:`creditsd.ledger.limits`). This service keeps the members and limits themselves:
each change locks the account, so it lands between two batches, never inside one.
"""
