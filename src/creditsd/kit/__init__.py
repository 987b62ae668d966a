"""The kit: what every part of creditsd uses and that knows no domain (the database's
doorway and its SQLite driver, errors, money, ids, JSON, pagination, rows, request
fields, idempotency keys and fingerprints, repeated log lines)."""
