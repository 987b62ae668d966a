"""The HTTP API's routes, one module per domain: each parses a request, hands the
services a transaction and answers."""
