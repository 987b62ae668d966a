"""The HTTP API's routes, one module per domain: each parses a request, hands the
services a transaction and answers. (Portal sessions live with the billing page in
``web``, the OpenAI-compatible routes with the proxy in ``proxy``.)"""
