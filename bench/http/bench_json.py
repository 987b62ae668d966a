"""The JSON codecs side by side: microseconds per call on a charge body and an account
response, and which of them hold the rules (exact decimals, NaN, duplicate keys, long
integers, huge exponents, bad UTF-8).

    .venv/bin/python bench/http/bench_json.py

msgspec is measured when installed (``pip install msgspec``); it is not a dependency.
"""

from __future__ import annotations

import importlib
import json
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import simplejson

from creditsd.kit import jsonio

CHARGE = (
    b'{"account_id":"acct_1234","amount":1.5,"description":"bench",'
    b'"metadata":{"model":"gpt-x","tokens":1234,"ok":true}}'
)
NOW = datetime.now(UTC)
ACCOUNT = {
    "id": "acct_1234",
    "balance": Decimal("99998.5"),
    "held": Decimal(0),
    "available": Decimal("99998.5"),
    "overdraft_limit": Decimal(0),
    "status": "active",
    "balance_by_source": {"promotion": Decimal("99998.5")},
    "low_balance_threshold": None,
    "aliases": [],
    "metadata": None,
    "created_at": NOW,
    "updated_at": NOW,
}
HOSTILE = {
    "10.5 exact": b'{"a": 10.5}',
    "NaN": b'{"a": NaN}',
    "duplicate key": b'{"a": 1, "a": 2}',
    "5000-digit integer": b'{"a": 1' + b"0" * 5000 + b"}",
    "exponent 1e999999999999999999999": b'{"a": 1e999999999999999999999}',
    "invalid UTF-8": b'{"a": "\xff"}',
}


def _simplejson_loads(text: bytes) -> Any:
    """What jsonio.loads was: simplejson with its options given on every call."""
    return simplejson.loads(
        text,
        use_decimal=True,
        parse_constant=jsonio._refuse_constant,
        object_pairs_hook=jsonio._unique_object,
        allow_nan=False,
    )


def codecs() -> tuple[dict[str, Callable[[bytes], Any]], dict[str, Callable[[Any], bytes]]]:
    """The decoders and encoders to compare, msgspec's when it is installed."""
    decoders: dict[str, Callable[[bytes], Any]] = {
        "simplejson.loads (before)": _simplejson_loads,
        "stdlib json, guards (jsonio.loads)": jsonio.loads,
        "orjson.loads (floats)": orjson.loads,
    }
    encoders: dict[str, Callable[[Any], bytes]] = {
        "simplejson.dumps (before, jsonio.dumps)": lambda value: jsonio.dumps(value).encode(),
        "orjson, Fragment(str(Decimal)) (jsonio.render)": jsonio.render,
    }
    try:
        msgspec: Any = importlib.import_module("msgspec")
    except ImportError:
        return decoders, encoders
    decoders["msgspec float_hook=Decimal"] = msgspec.json.Decoder(float_hook=Decimal).decode
    encoders["msgspec decimal_format=number (own timestamps)"] = msgspec.json.Encoder(
        decimal_format="number"
    ).encode
    return decoders, encoders


def per_call(function: Callable[[Any], object], argument: object) -> float:
    """Microseconds per call of ``function(argument)``, the best of five runs."""
    runs = timeit.repeat(lambda: function(argument), number=20_000, repeat=5)
    return min(runs) / 20_000 * 1e6


def outcome(decode: Callable[[bytes], Any], text: bytes) -> str:
    """What a decoder makes of one hostile text."""
    try:
        value = decode(text)["a"]
    except Exception as exc:  # which exception is the point
        return f"refused ({type(exc).__name__})"
    return f"{type(value).__name__} {str(value)[:12]}"


def main() -> None:
    """Print both tables."""
    decoders, encoders = codecs()
    print(f"decode a {len(CHARGE)}-byte charge body")
    for name, decode in decoders.items():
        print(f"  {per_call(decode, CHARGE):6.2f} us  {name}")
    print("encode an account response")
    for name, encode in encoders.items():
        print(f"  {per_call(encode, ACCOUNT):6.2f} us  {name}")
    print("hostile input")
    for name, decode in decoders.items():
        print(f"  {name}")
        for case, text in HOSTILE.items():
            print(f"    {case:36} {outcome(decode, text)}")
    print(json.dumps({"render == dumps": jsonio.render(ACCOUNT) == jsonio.dumps(ACCOUNT).encode()}))


if __name__ == "__main__":
    main()
