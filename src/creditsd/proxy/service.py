"""A model call through the proxy: held for before the upstream hears of it, settled on
what the upstream reports once it is over.

How a call ends decides what it costs (``settle``), and the capture records which rule
applied (``proxy_outcome`` and ``proxy_billed_on`` in its metadata):

============================  =========================================================
the call                      what is charged
============================  =========================================================
completed with usage          the usage, priced by the catalog
completed with no output      nothing (``[proxy] empty_completion = "free"``, default)
                              or the usage (``"bill"``)
client gone mid-stream        ``[proxy] on_client_disconnect``: ``"finish"`` (default)
                              reads the upstream to its usage and bills it;
                              ``"delivered"`` stops the upstream and bills what was sent
                              (gone: hung up, or cut for taking nothing for ``[proxy]
                              send_timeout_seconds``)
upstream failed before output nothing
upstream failed mid-stream    what was delivered
no usage reported             what was delivered
============================  =========================================================

"What was delivered" is the input's offline estimate plus the output's characters relayed
to the client (of a stream hung up on, those that reached it) over ``CHARS_PER_TOKEN``. A
stream is settled when the upstream's stream ends, however far its client has read
(:mod:`creditsd.proxy.streams`). The hold lasts ``[proxy] hold_seconds``, and every call's
is extended every half of that until the call is settled, so a crashed process's holds
expire and are released by the sweeper.

An embeddings call has no output: it is charged its input's usage, or its estimate when
none came. A charge that rounds to nothing at the ledger's scale is nothing: the hold is
released.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from creditsd.config import ProxySettings
from creditsd.kit import db
from creditsd.kit.errors import CreditsError, InvalidRequest, Unavailable
from creditsd.kit.repeats import repeats
from creditsd.ledger.errors import HoldNotOpen, InsufficientCredits
from creditsd.ledger.models import Hold
from creditsd.pricing.catalog import Catalog, TokenUse, ZeroPrice
from creditsd.pricing.providers import (
    OpenAIChatUsage,
    OpenAIEmbeddingsUsage,
    OpenAIResponsesUsage,
)

if TYPE_CHECKING:  # the ledger is handed in by the surface that serves the call
    from creditsd.inprocess import Ledger
    from creditsd.proxy.payers import Payer

log = logging.getLogger("creditsd.proxy")

CAPTURE_RETRY_FIRST = 0.1  # seconds before a capture the database refused is tried again
CAPTURE_RETRY_MOST = 5.0  # the longest wait between two tries
CHARS_PER_TOKEN = 4  # the estimate's rule of thumb: no tokenizer ships offline for every model


class CallEnd(StrEnum):
    """How a call ended."""

    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model's calls go: the upstream's base URL, key and name for the model."""

    base_url: str
    secret: str | None  # None: an upstream that takes no key (a local model server)
    model: str

    def headers(self) -> dict[str, str]:
        """The headers a call upstream carries."""
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers["Authorization"] = f"Bearer {self.secret}"
        return headers


KEYED_HOSTS = ("openrouter.ai", "api.openai.com")  # upstreams that answer nothing without a key


class ProxyNotConfigured(Unavailable):
    """A call whose upstream needs a key the configuration does not give."""

    code = "proxy_not_configured"

    def __init__(self, base_url: str) -> None:
        super().__init__(
            f"the proxy is not configured: {base_url} needs a key; set proxy.api_key "
            "(CREDITSD_PROXY__API_KEY), or point proxy.base_url at another upstream "
            "(creditsd dev-upstream serves one locally)"
        )


def route(settings: ProxySettings, model: str) -> Route:
    """``[proxy.models."<model>"]`` over ``[proxy]``; an upstream in ``KEYED_HOSTS`` with no
    key is :class:`ProxyNotConfigured` (503)."""
    own = settings.models.get(model)
    key = own.api_key if own is not None and own.api_key is not None else settings.api_key
    base_url = ((own.base_url if own else None) or settings.base_url).rstrip("/")
    if key is None and urlsplit(base_url).hostname in KEYED_HOSTS:
        raise ProxyNotConfigured(base_url)
    return Route(
        base_url=base_url,
        secret=key.get_secret_value() if key is not None else None,
        model=(own.model if own else None) or model,
    )


def estimate_input_tokens(body: bytes) -> int:
    """A call's input tokens, estimated offline from its body's size as it arrived, over
    ``CHARS_PER_TOKEN`` and rounded up. Every field a model reads (``messages``, ``tools``,
    ``functions``, ``tool_choice``, ``response_format``, a ``prompt``, an ``input`` and
    its ``instructions``) is in the body, so the same text is held for the same wherever a
    call carries it, fields an API adds later included: ``{"model":"m","prompt":"Hello
    there"}`` (36 bytes) is 9 tokens."""
    return math.ceil(len(body) / CHARS_PER_TOKEN)


CAP_FIELDS = ("max_completion_tokens", "max_tokens")
MAX_CAP = 10_000_000  # output tokens a call may ask for
MAX_CHOICES = 128  # OpenAI's own limit on n


class InvalidCall(CreditsError):
    """A call whose parameters leave its cost unbounded: the estimate needs them right."""

    code = "invalid_request"
    status = 400

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param} {reason}", param=param)


def whole_number(payload: dict[str, Any], name: str, high: int) -> int | None:
    """``payload[name]``, a whole number from 1 to ``high``, or None when it is absent;
    anything else is :class:`InvalidCall` (400)."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise InvalidCall(name, f"must be a whole number from 1 to {high}")
    return value


class ModelNotFound(CreditsError):
    """A call for a model the catalog does not price."""

    code = "model_not_found"
    status = 404

    def __init__(self, model: object) -> None:
        super().__init__(f"model {model!r} is not in the catalog")


def priced_model(catalog: Catalog, payload: dict[str, Any]) -> str:
    """The catalog model ``payload`` names, or :class:`ModelNotFound` (404)."""
    model = payload.get("model")
    if not isinstance(model, str) or model not in catalog.settings.models:
        raise ModelNotFound(model)
    return model


def streamed(payload: dict[str, Any]) -> bool:
    """Whether ``payload`` asks for a stream; a ``stream`` that is not true or false is
    :class:`InvalidCall` (400)."""
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidCall("stream", "must be true or false")
    return stream


@dataclass(frozen=True, slots=True)
class ModelCall:
    """What a model call asks for: its estimate (its input, then ``choices`` outputs of
    the output cap each), whether it streams, and whether its client asked for a stream's
    usage chunk."""

    estimate: TokenUse
    choices: int
    streamed: bool
    usage_asked: bool = False


def chat_call(payload: dict[str, Any], body: bytes, default_cap: int) -> ModelCall:
    """``payload``'s call (``body`` as it arrived), its cost bounded: its input's estimate,
    and the smallest of its caps (``default_cap`` when it names none) for each of its ``n``
    completions. Raises :class:`InvalidCall` (400) for a cap, ``n`` or ``stream`` that is
    not what OpenAI takes."""
    caps = [cap for name in CAP_FIELDS if (cap := whole_number(payload, name, MAX_CAP)) is not None]
    choices = whole_number(payload, "n", MAX_CHOICES) or 1
    cap = min(caps, default=default_cap)
    use = TokenUse(
        payload["model"], input_tokens=estimate_input_tokens(body), output_tokens=cap * choices
    )
    if not streamed(payload):
        return ModelCall(use, choices, streamed=False)
    return ModelCall(use, choices, streamed=True, usage_asked=_ask_stream_usage(payload))


def _ask_stream_usage(payload: dict[str, Any]) -> bool:
    """Ask a stream's upstream for its usage chunk, which the call is billed on; whether
    the client asked for it too (``stream_options.include_usage``, or OpenRouter's
    ``usage.include``), so that it reaches the client."""
    options = payload.get("stream_options")
    options = options if isinstance(options, dict) else {}
    accounting = payload.get("usage")
    asked = options.get("include_usage") is True or (
        isinstance(accounting, dict) and accounting.get("include") is True
    )
    payload["stream_options"] = {**options, "include_usage": True}
    return asked


def limit_output(payload: dict[str, Any], cap: int) -> None:
    """Send ``cap`` upstream in every cap field the call named (``max_tokens`` if none),
    so the upstream never writes more than was held for."""
    named = [name for name in CAP_FIELDS if name in payload] or ["max_tokens"]
    for name in named:
        payload[name] = cap


def affordable_cap(
    catalog: Catalog, ledger: Ledger, use: TokenUse, available: int, choices: int
) -> int:
    """The largest output cap, below ``use``'s, at which ``choices`` completions are
    estimated at no more than ``available`` (0 if none is); prices grow with the cap, so
    a binary search finds it."""
    low, high = 0, use.output_tokens // choices - 1
    while low < high:
        middle = (low + high + 1) // 2
        trial = replace(use, output_tokens=middle * choices)
        if catalog.price(trial, ledger.money).amount <= available:
            low = middle
        else:
            high = middle - 1
    return low


UsageFormat = type[OpenAIChatUsage | OpenAIResponsesUsage | OpenAIEmbeddingsUsage]


@dataclass
class Call:
    """One call: who pays, its hold, and what has happened since."""

    ledger: Ledger
    hold: Hold
    app: str
    model: str
    prompt_tokens: int
    cap: int
    clamped: bool
    usage_format: UsageFormat  # how the call's API writes its usage
    overhead: float = 0.0  # seconds creditsd spent on the call, upstream time excluded
    finished_at: datetime | None = None  # when the upstream was done with it
    keeper: asyncio.Task[None] | None = None  # extends the hold until the call is settled

    @property
    def overhead_ms(self) -> str:
        """The overhead in milliseconds, for the ``X-Creditsd-Overhead-Ms`` header."""
        return f"{self.overhead * 1000:.3f}"

    def keep(self) -> None:
        """Keep the hold alive until the call is settled: however long the upstream takes,
        however slowly the client reads, and while a capture waits for the database."""
        self.keeper = asyncio.ensure_future(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Extend the hold each time half its life has passed; a failed extension is
        logged and tried again at the next half-life."""
        seconds = self.ledger.settings.proxy.hold_seconds
        while True:
            await asyncio.sleep(seconds / 2)
            try:
                await self.ledger.extend_hold(self.hold.id, seconds)
            except HoldNotOpen:
                return
            except (CreditsError, *db.OUTAGES) as exc:
                repeats.say(log, f"a call's hold could not be extended: {db.described(exc)}")

    async def settle(self, outcome: CallEnd, usage: Any, delivered_chars: int = 0) -> None:
        """Capture what a chat call costs by the rules above (``delivered_chars``: the
        output characters it delivered), releasing the rest; or release it all when it
        costs nothing. Never raises (see :meth:`_charge`)."""
        await self._charge(outcome, *self._cost(usage, delivered_chars))

    async def settle_images(self, outcome: CallEnd, images: int) -> None:
        """Capture the images an image call generated, apiece; none cost nothing."""
        use = TokenUse(self.model, images=images) if images else None
        await self._charge(outcome, use, "images" if images else "nothing")

    async def settle_embeddings(self, outcome: CallEnd, usage: Any, embeddings: int) -> None:
        """Capture the input tokens an embeddings call used, as the upstream counted them,
        else as estimated; a call that returned no embedding costs nothing."""
        if not embeddings:
            use, billed_on = None, "nothing"
        elif (used := self._used(usage)) is not None:
            use, billed_on = used, "usage"
        else:
            use, billed_on = TokenUse(self.model, input_tokens=self.prompt_tokens), "estimate"
        await self._charge(outcome, use, billed_on)

    async def _charge(self, outcome: CallEnd, use: TokenUse | None, billed_on: str) -> None:
        """Settle once the upstream is done with the call, the client having its answer:
        nobody is left to tell of a failure, so none is raised. A capture the database
        cannot take now is retried until it can, the hold kept alive meanwhile; one that
        lands after the hold expired is still charged (``finished_at``). A release that
        fails is left to the hold's expiry: the call costs nothing either way."""
        self.finished_at = self.finished_at or self.ledger.now()
        try:
            if use is not None:
                metadata = {
                    **(self.hold.metadata or {}),
                    "proxy_outcome": str(outcome),
                    "proxy_billed_on": billed_on,
                }
                if await self._capture(use, metadata):
                    return
            try:
                await self.ledger.release_hold(self.hold.id, patient=True)
            except (CreditsError, *db.OUTAGES) as exc:
                repeats.say(log, f"a call's hold could not be released; it will expire: {exc}")
            log.info("call %s: %s, nothing charged", self.hold.id, outcome)
        finally:
            if self.keeper is not None:
                self.keeper.cancel()

    async def _capture(self, use: TokenUse, metadata: dict[str, Any]) -> bool:
        """Capture ``use``, retrying while the database is out; False when it costs
        nothing at the ledger's scale (the hold is then to be released)."""
        delay = CAPTURE_RETRY_FIRST
        while True:
            try:
                await self.ledger.capture_hold(
                    self.hold.id,
                    use=use,
                    metadata=metadata,
                    app=self.app,
                    finished_at=self.finished_at,
                    patient=True,
                    served=True,
                )
            except ZeroPrice:  # too little to cost a minor unit at the ledger's scale
                return False
            except (Unavailable, *db.OUTAGES) as exc:
                repeats.say(log, f"a call's capture waits for the database: {db.described(exc)}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, CAPTURE_RETRY_MOST)
                continue
            except CreditsError as exc:
                repeats.say(log, f"a call could not be settled: {exc.code}: {exc.message}")
            return True

    def _used(self, usage: Any) -> TokenUse | None:
        """``usage`` as the call's API writes it, in the catalog's counts; None when there
        is none or it cannot be read."""
        if usage is None:
            return None
        try:
            return self.usage_format.model_validate(usage).use(self.model)
        except (InvalidRequest, ValueError) as exc:
            log.warning(
                "call %s: unreadable usage (%s); billing what was delivered",
                self.hold.id,
                type(exc).__name__,
            )
            return None

    def _cost(self, usage: Any, delivered_chars: int) -> tuple[TokenUse | None, str]:
        if (used := self._used(usage)) is not None:
            if used.output_tokens or used.reasoning_tokens:
                return used, "usage"
            if self.ledger.settings.proxy.empty_completion == "bill":
                return used, "usage"
            return None, "nothing"
        if not delivered_chars:
            return None, "nothing"
        delivered = math.ceil(delivered_chars / CHARS_PER_TOKEN)
        use = TokenUse(self.model, input_tokens=self.prompt_tokens, output_tokens=delivered)
        return use, "delivered"


async def open_call(
    ledger: Ledger,
    payer: Payer,
    estimate: TokenUse,
    *,
    clamp: bool | None,
    started: float,
    choices: int = 1,
    usage_format: UsageFormat = OpenAIChatUsage,
) -> Call:
    """Hold ``estimate`` (its ``choices`` outputs' cap lowered to what is affordable when
    ``clamp``, else ``[proxy] clamp_max_tokens``, says so), or refuse the call with 402
    before the upstream hears of it. An estimate too small to cost a minor unit holds one:
    no call goes upstream for an account that has nothing."""
    settings = ledger.settings.proxy

    def hold(use: TokenUse | None) -> Awaitable[Hold]:
        """A hold for ``use``'s price, or for one minor unit when None."""
        return ledger.open_hold(
            payer.account_id,
            1 if use is None else None,
            use=use,
            expires_in=settings.hold_seconds,
            metadata={"proxy_model": estimate.model},
            app=payer.app,
            proxy_key_id=payer.proxy_key_id,
            member=payer.member,
        )

    clamped = False
    try:
        held = await hold(estimate)
    except ZeroPrice:
        held = await hold(None)
    except InsufficientCredits as short:
        if not (settings.clamp_max_tokens if clamp is None else clamp):
            raise
        catalog = await ledger.catalog()
        cap = affordable_cap(catalog, ledger, estimate, short.available, choices)
        if cap < 1:
            raise
        estimate = replace(estimate, output_tokens=cap * choices)
        held = await hold(estimate)
        clamped = True
    return Call(
        ledger,
        held,
        app=payer.app,
        model=estimate.model,
        prompt_tokens=estimate.input_tokens,
        cap=estimate.output_tokens // choices,
        clamped=clamped,
        usage_format=usage_format,
        overhead=time.perf_counter() - started,
    )
