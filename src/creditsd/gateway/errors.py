"""Errors of the gateway link."""

from __future__ import annotations

from creditsd.kit.errors import Unauthenticated, Unavailable


class GatewayNotConfigured(Unavailable):
    """The link's ``internal_secret`` is not set, so nothing can be let in."""

    code = "gateway_not_configured"

    def __init__(self, section: str) -> None:
        super().__init__(f"this link is not configured: set {section}.internal_secret")


class BadInternalSecret(Unauthenticated):
    """``X-Internal-Secret`` is missing or wrong."""

    code = "invalid_internal_secret"

    def __init__(self) -> None:
        super().__init__("the X-Internal-Secret header is missing or wrong")
