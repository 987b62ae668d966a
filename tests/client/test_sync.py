"""Client (blocking) against a real ``creditsd serve`` process."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from creditsd.client import (
    Client,
    InsufficientCreditsError,
    Limit,
    LimitReachedError,
    NotFoundError,
)
from creditsd.inprocess import Ledger
from tests.conftest import create_key
from tests.test_processes import serve

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Served:
    """A running server and keys for three apps."""

    base_url: str
    billing: str
    chat: str
    canvas: str


@pytest.fixture
async def served(ledger: Ledger, database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """``creditsd serve`` on the test's database, with an admin key and two app keys."""
    billing = await create_key(ledger, "admin", "billing")
    chat = await create_key(ledger, "app", "chat")
    canvas = await create_key(ledger, "app", "canvas")
    with serve(database_url, tmp_path) as base_url:
        yield Served(base_url, billing, chat, canvas)


class DroppingProxy:
    """A TCP proxy that delivers the first connection's request, then hangs up on its answer.

    The server has done the work by the time its answer starts to come back; the client
    sees only a connection closed without a response. Later connections pass through.
    """

    def __init__(self, upstream: str) -> None:
        address = urlsplit(upstream)
        self.upstream = (str(address.hostname), int(address.port or 80))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting connections."""
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            drop = self.connections == 1
            for source, target, hang_up in (
                (downstream, upstream, False),
                (upstream, downstream, drop),
            ):
                threading.Thread(
                    target=self._pipe, args=(source, target, hang_up), daemon=True
                ).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket, hang_up: bool) -> None:
        try:
            while data := source.recv(65536):
                if hang_up:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def proxy(served: Served) -> Iterator[DroppingProxy]:
    """A proxy in front of the served process that loses the first answer."""
    found = DroppingProxy(served.base_url)
    yield found
    found.close()


def test_two_apps_spend_one_balance_over_http(served: Served) -> None:
    with (
        Client(served.base_url, served.billing) as billing,
        Client(served.base_url, served.chat, app="chat-api") as chat,
        Client(served.base_url, served.canvas) as canvas,
    ):
        assert billing.add("user_2abc", 100, reason="welcome").balance == 100
        assert chat.charge("user_2abc", 10, description="chat_message").balance == 90
        assert canvas.charge("user_2abc", 50, description="image").balance == 40
        assert chat.get_balance("user_2abc") == canvas.get_balance("user_2abc") == 40

        with pytest.raises(InsufficientCreditsError) as refused:
            chat.charge("user_2abc", "40.5")
        assert (refused.value.required, refused.value.available) == (Decimal("40.5"), Decimal(40))

        hold = canvas.hold("user_2abc", 30, expires_in=600)
        assert canvas.get_balance("user_2abc") == 10
        assert canvas.capture(hold.id, "12.25").transfer.balance == Decimal("27.75")
        with pytest.raises(NotFoundError):
            canvas.get_hold("hold_nope")

        history = [(t.kind, t.app, t.change) for t in chat.iter_transactions("user_2abc")]
        assert history == [
            ("capture", "canvas", Decimal("-12.25")),
            ("charge", "canvas", -50),
            ("charge", "chat", -10),
            ("grant", "billing", 100),
        ]
        assert chat.verify_balance("user_2abc").valid


def test_a_member_spends_within_its_limit_over_http(served: Served) -> None:
    with Client(served.base_url, served.billing) as billing:
        billing.grant("org:acme", 1000)
        ada = billing.put_member("org:acme", "ada", limits=[Limit("12.5", "week")])
        assert [(s.period, s.remaining) for s in ada.limits] == [("week", Decimal("12.5"))]
        assert billing.charge("org:acme", 10, member="ada").member == "ada"
        with pytest.raises(LimitReachedError) as refused:
            billing.charge("org:acme", 3, member="ada")
        assert (refused.value.remaining, refused.value.required) == (Decimal("2.5"), Decimal(3))
        assert refused.value.resets_at is not None
        assert refused.value.resets_at.weekday() == 0  # weeks start on Monday
        (member,) = billing.list_members("org:acme").data
        assert [s.spent for s in member.limits] == [10]


def test_a_connection_dropped_after_the_charge_is_retried_once(
    served: Served, proxy: DroppingProxy
) -> None:
    with Client(served.base_url, served.billing) as billing:
        billing.grant("u", 100)
        with Client(proxy.base_url, served.chat, backoff=0) as chat:
            charged = chat.charge("u", 10)
        assert proxy.connections == 2
        assert charged.replayed  # the retry was answered from the server's record
        assert [t.kind for t in billing.iter_transactions("u")] == ["charge", "grant"]
        assert billing.get_balance("u") == 90
        assert billing.verify_balance("u").valid


def test_an_auto_topup_rule_is_set_read_and_turned_off_over_http(served: Served) -> None:
    with Client(served.base_url, served.chat) as chat:
        chat.initialize_account("user_2abc")
        with pytest.raises(NotFoundError) as none_yet:
            chat.get_auto_topup("user_2abc")
        assert none_yet.value.code == "auto_topup_not_found"
        rule = chat.set_auto_topup(
            "user_2abc", threshold="12.5", target_balance=100, monthly_cap=Decimal(1000)
        )
        assert (rule.threshold, rule.target_balance, rule.state) == (
            Decimal("12.5"),
            Decimal(100),
            "awaiting_card",
        )
        assert chat.get_auto_topup("user_2abc") == rule
        off = chat.set_auto_topup(
            "user_2abc", enabled=False, threshold="12.5", target_balance=100, monthly_cap=1000
        )
        assert (off.enabled, off.state) == (False, "off")
