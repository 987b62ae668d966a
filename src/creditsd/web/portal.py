"""The billing page an end user opens through a portal link their app asks for."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
