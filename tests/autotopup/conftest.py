"""Auto top-up tests use the Stripe suite's shop and fake."""

from tests.stripe.conftest import fake, shop, shop_api

__all__ = ["fake", "shop", "shop_api"]
