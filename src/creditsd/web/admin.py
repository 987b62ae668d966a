"""The admin console: operators sign in with an admin key and run the ledger."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin", include_in_schema=False)
