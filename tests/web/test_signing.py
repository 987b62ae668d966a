"""Signed tokens: a claim can never stand in for the purpose or the expiry it is signed with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditsd.web.signing import BadToken, Signer

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("claim", ["p", "exp"])
def test_a_claim_named_like_the_purpose_or_expiry_is_refused(claim: str) -> None:
    signer = Signer("secret")
    with pytest.raises(ValueError, match=claim):
        signer.sign("portal-link", {"sub": "ada", claim: "billing"}, NOW + timedelta(minutes=5))


def test_a_token_is_its_claims_for_its_purpose_until_it_expires() -> None:
    signer = Signer("secret")
    token = signer.sign("portal-link", {"sub": "ada"}, NOW + timedelta(minutes=5))
    assert signer.verify("portal-link", token, NOW)["sub"] == "ada"
    with pytest.raises(BadToken, match="not valid"):
        signer.verify("billing", token, NOW)
    with pytest.raises(BadToken, match="expired"):
        signer.verify("portal-link", token, NOW + timedelta(minutes=5))
