"""Errors of the Stripe integration."""

from __future__ import annotations

from creditsd.errors import CreditsError, InvalidRequest, Unavailable


class StripeNotConfigured(Unavailable):
    """``[stripe]`` lacks the key this needs."""

    code = "stripe_not_configured"

    def __init__(self, key: str) -> None:
        super().__init__(f"Stripe is not configured: set stripe.{key}")


class UnknownPack(InvalidRequest):
    """A credit pack the configuration does not sell."""

    code = "unknown_pack"

    def __init__(self, pack: str, known: list[str]) -> None:
        super().__init__(f"there is no credit pack {pack!r}", pack=pack, known=known)


class PaymentProviderError(CreditsError):
    """Stripe failed or refused; its request id helps find out why in its dashboard."""

    code = "payment_provider_error"
    status = 502

    def __init__(self, request_id: str | None) -> None:
        super().__init__("Stripe could not complete the request", stripe_request_id=request_id)
