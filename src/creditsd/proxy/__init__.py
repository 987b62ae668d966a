"""The OpenAI-compatible proxy: every model call held for before it is forwarded, and
billed on the usage the upstream reports."""
