"""The HTTP API's request and response bodies, one module per domain; unknown fields are
refused."""
