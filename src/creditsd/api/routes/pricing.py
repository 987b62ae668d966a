"""``/v1/pricing`` (the catalog) and ``/v1/quotes`` (a price without a charge)."""

from __future__ import annotations

from fastapi import APIRouter

from creditsd.api.auth import LedgerDep, ReadKey
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import respond
from creditsd.api.schemas.pricing import CatalogOut, QuoteCreate, QuoteOut

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["pricing"])


@router.get("/pricing", response_model=CatalogOut, responses=error_responses(403))
async def get_pricing(ledger: LedgerDep, _key: ReadKey) -> ExactJSONResponse:
    """The catalog version prices come from now: features, meters, models."""
    return respond(CatalogOut.of(await ledger.catalog()))


@router.post("/quotes", response_model=QuoteOut, responses=error_responses(403))
async def create_quote(body: QuoteCreate, ledger: LedgerDep, _key: ReadKey) -> ExactJSONResponse:
    """What a feature or an LLM call's usage would cost now; nothing is charged."""
    use = body.use()
    assert use is not None  # the schema requires feature or usage
    price = await ledger.quote(use)
    return respond(QuoteOut.of(price, ledger.money.to_decimal(price.amount)))
