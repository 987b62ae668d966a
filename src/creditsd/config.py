"""Configuration: one TOML file, every key overridable by ``CREDITSD_<SECTION>__<KEY>``."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from creditsd.money import MAX_SCALE, AmountError, Money, parse_decimal

DEFAULT_CONFIG_FILE = "creditsd.toml"
DEFAULT_DATABASE_URL = "sqlite:///creditsd.db"
ENV_PREFIX = "CREDITSD_"


class ConfigError(Exception):
    """Configuration that cannot start the service; the message names the key."""


def _decimal(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from exc


ConfigDecimal = Annotated[Decimal, BeforeValidator(_decimal)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerSettings(_Section):
    """``[ledger]``: how amounts are kept."""

    scale: int = Field(4, ge=0, le=MAX_SCALE, description="Decimal places of one credit.")
    group_commit: bool = Field(False, description="Share transactions between concurrent charges.")
    group_commit_batch: int = Field(100, ge=1, le=10_000)
    group_commit_lanes: int = Field(4, ge=1, le=1000)


class AccountSettings(_Section):
    """``[accounts]``: how customer accounts come to exist."""

    auto_create: bool = True
    signup_grant: ConfigDecimal = Decimal(0)


class HoldSettings(_Section):
    """``[holds]``: reservation lifetimes, in seconds."""

    default_expires_in: int = Field(900, ge=1)
    max_expires_in: int = Field(7 * 24 * 3600, ge=1)
    sweep_interval: float = Field(5.0, gt=0)


class ServerSettings(_Section):
    """``[server]``: where ``creditsd serve`` listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    keep_alive_timeout: int = Field(
        75, ge=1, le=3600, description="Seconds an idle client connection is kept open."
    )


class DatabaseSettings(_Section):
    """``[database]``: ``url`` is also read from ``CREDITSD_DATABASE_URL``."""

    url: str = DEFAULT_DATABASE_URL
    pool_size: int = Field(10, ge=1, le=1000)


class Settings(_Section):
    """The whole configuration."""

    ledger: LedgerSettings = LedgerSettings()
    accounts: AccountSettings = AccountSettings()
    holds: HoldSettings = HoldSettings()
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()

    @property
    def money(self) -> Money:
        """The converter for this deployment's scale."""
        return Money(self.ledger.scale)

    @property
    def signup_grant_units(self) -> int:
        """The sign-up grant in minor units."""
        try:
            return self.money.to_minor(self.accounts.signup_grant, allow_zero=True)
        except AmountError as exc:
            raise ConfigError(f"accounts.signup_grant {exc}") from exc


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name.removeprefix(ENV_PREFIX).lower().partition("__")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section} must be a table")
        table[key] = value
    if url := environ.get(f"{ENV_PREFIX}DATABASE_URL"):
        data.setdefault("database", {})["url"] = url


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (``CREDITSD_CONFIG``, else ``creditsd.toml`` if present) and the env."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(f"{ENV_PREFIX}CONFIG")
    file = Path(explicit or DEFAULT_CONFIG_FILE)
    data = _read_file(file) if explicit or file.exists() else {}
    _overlay_environment(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    _ = settings.signup_grant_units  # fail at start, not at the first sign-up
    return settings
