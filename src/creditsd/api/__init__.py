"""The HTTP API: FastAPI app, strict JSON in, exact JSON out, one error shape."""
