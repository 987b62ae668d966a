"""Errors of the Stripe integration."""

from __future__ import annotations

from creditsd.kit.errors import CreditsError, InvalidRequest, Unavailable


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


class LivemodeMismatch(CreditsError):
    """A live-mode event at a deployment whose key is a test-mode one, or the other way round.

    400, so that Stripe keeps retrying and reports the failing endpoint to the account's
    owners: the webhook secret and the key belong to different modes, which only a change
    of configuration mends. The event is stored (unhandled) and handled on a delivery after
    the configuration matches.
    """

    code = "livemode_mismatch"
    status = 400

    def __init__(self, livemode: bool) -> None:
        event, key = ("live", "test") if livemode else ("test", "live")
        super().__init__(
            f"a {event}-mode event reached a deployment whose Stripe key is a {key}-mode one"
        )


class PaymentProviderError(CreditsError):
    """Stripe failed or refused; its request id helps find out why in its dashboard."""

    code = "payment_provider_error"
    status = 502

    def __init__(self, request_id: str | None) -> None:
        super().__init__("Stripe could not complete the request", stripe_request_id=request_id)


class PaymentProviderUnreachable(PaymentProviderError):
    """Stripe could not be reached (the connection was refused, dropped or timed out, even
    after the client's retries): 503, with when to try again. Nothing reached Stripe, or
    what did is kept to one session by the request's idempotency key. A minute: an outage
    of Stripe's is rarely shorter, and it is past the SDKs' 30 seconds, so an app's request
    is answered at once rather than held while they wait."""

    status = 503
    RETRY_AFTER_SECONDS = 60

    def __init__(self) -> None:
        CreditsError.__init__(
            self,
            "Stripe could not be reached: nothing was charged; try again shortly",
            retry_after=self.RETRY_AFTER_SECONDS,
        )
