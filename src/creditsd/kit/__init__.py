"""The kit: what every part of creditsd uses and that knows no domain (the database's
doorway, errors, money, ids, JSON, pagination, rows, request fields, retries)."""
