"""Stripe: credit packs sold through Checkout, and the webhooks that grant and take back."""
