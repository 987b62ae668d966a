"""Configuration from TOML and the environment; bad values stop the start, naming the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from creditsd.config import ConfigError, load_settings

EXAMPLE = Path(__file__).parent.parent / "creditsd.example.toml"


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.ledger.scale == 4
    assert settings.accounts.auto_create is True
    assert settings.accounts.signup_grant == 0
    assert settings.database.url == "sqlite:///creditsd.db"


def test_the_shipped_example_grants_100_at_sign_up() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.accounts.signup_grant == Decimal(100)
    assert settings.signup_grant_units == 1_000_000


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[accounts]\nsignup_grant = 5\n[server]\nport = 9000\n")
    settings = load_settings(
        environ={
            "CREDITSD_CONFIG": str(file),
            "CREDITSD_ACCOUNTS__SIGNUP_GRANT": "12.5",
            "CREDITSD_DATABASE_URL": "postgresql://db/x",
        }
    )
    assert settings.accounts.signup_grant == Decimal("12.5")
    assert settings.server.port == 9000
    assert settings.database.url == "postgresql://db/x"


@pytest.mark.parametrize(
    ("toml", "environ", "named"),
    [
        ("[ledger]\nscale = 9\n", {}, "ledger.scale"),
        ("[accounts]\nsignup_grant = 0.00001\n", {}, "accounts.signup_grant"),
        ("[accounts]\nsignup_grant = -1\n", {}, "accounts.signup_grant"),
        ("[accounts]\nsignup_grant = nan\n", {}, "accounts.signup_grant"),
        ("[accounts]\nauto_creat = true\n", {}, "accounts.auto_creat"),
        ("[nope]\nx = 1\n", {}, "nope"),
        ("", {"CREDITSD_SERVER__PORT": "eighty"}, "server.port"),
        ("[holds]\nsweep_interval = 0\n", {}, "holds.sweep_interval"),
        ("not toml", {}, "not valid TOML"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    file = tmp_path / "c.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(file, environ=environ)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(environ={"CREDITSD_CONFIG": str(tmp_path / "absent.toml")})


def test_the_example_lists_every_key() -> None:
    import tomllib

    from creditsd.config import Settings

    example = tomllib.loads(EXAMPLE.read_text())
    documented = {(section, key) for section, table in example.items() for key in table}
    known = {
        (section, key)
        for section, field in Settings.model_fields.items()
        for key in field.annotation.model_fields  # type: ignore[union-attr]
    }
    assert documented == known
