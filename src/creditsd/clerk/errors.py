"""Errors of the Clerk integration."""

from __future__ import annotations

from creditsd.kit.errors import Unavailable


class ClerkNotConfigured(Unavailable):
    """``[clerk] webhook_secret`` is not set."""

    code = "clerk_not_configured"

    def __init__(self) -> None:
        super().__init__("Clerk is not configured: set clerk.webhook_secret")
