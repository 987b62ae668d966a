"""Our ids: Crockford base32 of a millisecond clock and a random part, in creation order."""

from __future__ import annotations

import base64
import random

from creditsd.kit import ids

_RFC_4648_TO_CROCKFORD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz"
)


def test_the_digits_are_rfc_4648_base32_written_as_crockfords() -> None:
    for value in [0, 1, 33, 2**130 - 1, *(random.getrandbits(128) for _ in range(1000))]:
        reference = base64.b32encode(value.to_bytes(20, "big")).decode()
        assert ids.encode(value) == reference.translate(_RFC_4648_TO_CROCKFORD)[-26:]


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = [ids.new_id("tr") for _ in range(10_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(len(made_id) == len("tr_") + 26 for made_id in made)
