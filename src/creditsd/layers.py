"""The layer map: which layer every part of creditsd belongs to, and the arrows that must
never exist between them. ``tests/test_layers.py`` reads it; the README's "How a write
works" draws it.

From the top: **surfaces** are entry points (HTTP routes, pages, the CLI, worker steps,
the in-process ``Ledger``, the proxy): they open a transaction and hand it down.
**Services**, one folder per domain, decide the rules on the connection they are given.
The **ledger** is the posting engine with its statements and models. The **kit** is what
every domain uses and knows none of them. An import may point down or stay in its layer;
the SDK (``creditsd.client``) stands apart and imports nothing of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Layer(IntEnum):
    """A layer; a higher one may import a lower one, never the other way."""

    KIT = 0
    LEDGER = 1
    SERVICE = 2
    SURFACE = 3


# Every package and root module, by its folder: a module belongs to the longest entry that
# names it or a package around it. A module the map does not name is an error of the map.
LAYERS: dict[str, Layer] = {
    "creditsd.__main__": Layer.SURFACE,
    "creditsd.api": Layer.SURFACE,
    "creditsd.cli": Layer.SURFACE,
    "creditsd.inprocess": Layer.SURFACE,
    "creditsd.migrations": Layer.SURFACE,  # run by the CLI and at start, before any work
    "creditsd.proxy": Layer.SURFACE,  # the one orchestrator that spans transactions
    "creditsd.web": Layer.SURFACE,
    "creditsd.worker": Layer.SURFACE,
    "creditsd.autotopup": Layer.SERVICE,
    "creditsd.clerk": Layer.SERVICE,
    "creditsd.gateway": Layer.SERVICE,
    "creditsd.holds": Layer.SERVICE,
    "creditsd.inbox": Layer.SERVICE,
    "creditsd.integrity": Layer.SERVICE,
    "creditsd.keys": Layer.SERVICE,
    "creditsd.members": Layer.SERVICE,
    "creditsd.plans": Layer.SERVICE,
    "creditsd.pricing": Layer.SERVICE,
    "creditsd.proxy_keys": Layer.SERVICE,
    "creditsd.stripe": Layer.SERVICE,
    "creditsd.usage": Layer.SERVICE,
    "creditsd.webhooks": Layer.SERVICE,
    "creditsd.ledger": Layer.LEDGER,
    "creditsd.audit": Layer.LEDGER,  # written by the engine in the transaction of each change
    "creditsd.kit": Layer.KIT,
    # The deployment's settings and its tables, which every layer reads.
    "creditsd.config": Layer.KIT,
    "creditsd.layers": Layer.KIT,
    "creditsd.price_settings": Layer.KIT,
    "creditsd.tables": Layer.KIT,
    "creditsd.version": Layer.KIT,
}

SDK = "creditsd.client"


@dataclass(frozen=True, slots=True)
class Rule:
    """An arrow that must never exist: from a module of layer ``source`` to one of layer
    ``target`` (only to the module ``target_module``, when it is given)."""

    name: str
    source: Layer
    target: Layer
    target_module: str | None = None

    def forbids(self, importer: str, imported: str) -> bool:
        """Whether ``importer`` importing ``imported`` is this arrow."""
        if self.target_module is not None and imported != self.target_module:
            return False
        return layer_of(importer) == self.source and layer_of(imported) == self.target


# The arrows pointing up, by name; the SDK's own rule (it imports nothing of the server)
# stands beside them, as the SDK stands outside the map.
RULES = (
    Rule("a service imports a surface", Layer.SERVICE, Layer.SURFACE),
    Rule(
        "a service imports the in-process Ledger",
        Layer.SERVICE,
        Layer.SURFACE,
        target_module="creditsd.inprocess",
    ),
    Rule("the ledger imports a service", Layer.LEDGER, Layer.SERVICE),
    Rule("the ledger imports a surface", Layer.LEDGER, Layer.SURFACE),
    Rule("the kit imports the ledger", Layer.KIT, Layer.LEDGER),
    Rule("the kit imports a service", Layer.KIT, Layer.SERVICE),
    Rule("the kit imports a surface", Layer.KIT, Layer.SURFACE),
)


def layer_of(module: str) -> Layer:
    """The layer of a ``creditsd`` module: that of the longest map entry naming it or a
    package around it. Raises ``KeyError`` for a module the map does not place."""
    parts = module.split(".")
    while parts:
        if (name := ".".join(parts)) in LAYERS:
            return LAYERS[name]
        parts.pop()
    raise KeyError(module)
