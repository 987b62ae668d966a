"""Proxy keys: what an app mints so that one account's LLM client calls ``/openai/v1``
itself, within an optional spend limit.

A proxy key is hashed at rest like an API key (only its hint is shown after it is
minted), works only on ``/openai/v1`` and only for its own account, and can be revoked.
Its spend is what its holds' captures charged (``proxy_keys.spent``) plus what its open,
unexpired holds still reserve; the hold that would take it past its limit is refused
(402 ``key_limit_reached``) in the transaction that would open it, under the key's row
lock, so concurrent calls through one key never overshoot. A call whose process died
leaves a hold that stops counting once it expires.
"""
