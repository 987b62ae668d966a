"""API keys: hashed at rest, each with a scope and the name of the app that uses it."""
