"""Configuration from TOML and the environment; bad values stop the start, naming the key."""

from __future__ import annotations

import os
import re
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
        ("", {"CREDITSD_STRIPE__SECRET_KEY": "pk_live_oops"}, "stripe.secret_key"),
        ("", {"CREDITSD_STRIPE__WEBHOOK_SECRET": "secret"}, "stripe.webhook_secret"),
        ("", {"CREDITSD_CLERK__WEBHOOK_SECRET": "sk_x"}, "clerk.webhook_secret"),
        ('[stripe]\nrefund_policy = "forgive"\n', {}, "stripe.refund_policy"),
        ('[packs.small]\ncredits = 0\nprice_id = "price_a"\n', {}, "packs.small.credits"),
        ('[packs.small]\ncredits = 10\nprice_id = "prod_a"\n', {}, "packs.small.price_id"),
        ('[packs.small]\ncredits = nan\nprice_id = "price_a"\n', {}, "packs.small.credits"),
        ("[packs.small]\ncredits = 10\n", {}, "packs.small.price_id"),
        (
            '[packs.a]\ncredits = 1\nprice_id = "price_x"\n'
            '[packs.b]\ncredits = 2\nprice_id = "price_x"\n',
            {},
            "packs.b uses price price_x",
        ),
        ("[plans.cplan_pro]\ncredits = -5\n", {}, "plans.cplan_pro.credits"),
        (
            '[packs.small]\ncredits = 0.00001\nprice_id = "price_a"\n',
            {},
            "packs.small.credits has more than 4 decimal places",
        ),
        ("[plans.cplan_pro]\ncredits = 0.00001\n", {}, "plans.cplan_pro.credits has more"),
        ("[webhooks]\nlow_balance_threshold = 0.00001\n", {}, "webhooks.low_balance_threshold"),
        ("[gateway]\nenabled = true\n", {}, r"gateway \(line 1\): base_url is required"),
        (
            '[gateway]\nenabled = true\nbase_url = "http://gw"\n',
            {},
            r"gateway \(line 1\): internal_secret is required",
        ),
        ("", {"CREDITSD_GATEWAY__INTERNAL_SECRET": "short"}, "gateway.internal_secret"),
        ("[gateway]\npoints_to_usd = 0\n", {}, "gateway.points_to_usd"),
        ('[gateway]\nbase_url = "ftp://gw"\n', {}, "gateway.base_url"),
        ("[gateway]\ntimeout_seconds = nan\n", {}, "gateway.timeout_seconds"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    file = tmp_path / "c.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(file, environ=environ)


def test_packs_and_secrets_come_from_the_environment_and_secrets_never_show() -> None:
    settings = load_settings(
        "/dev/null",
        environ={
            "CREDITSD_PACKS__STARTER__CREDITS": "500",
            "CREDITSD_PACKS__STARTER__PRICE_ID": "price_starter",
            "CREDITSD_STRIPE__SECRET_KEY": "sk_test_very_secret",
        },
    )
    assert settings.packs["starter"].credits == 500
    assert "sk_test_very_secret" not in repr(settings)
    assert "sk_test_very_secret" not in str(settings.stripe)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(environ={"CREDITSD_CONFIG": str(tmp_path / "absent.toml")})


def test_the_example_lists_every_key() -> None:
    import tomllib

    from creditsd.config import PackSettings, PlanSettings, Settings

    example = tomllib.loads(EXAMPLE.read_text())
    entries = {"packs": PackSettings, "plans": PlanSettings}  # tables of named entries
    documented = {
        (section, key)
        for section, table in example.items()
        for key in (table if section not in entries else next(iter(table.values())))
    }
    # Secrets have no safe example value, so they are shown commented out: `# key = "..."`.
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := re.fullmatch(r"\[([a-z_]+)\]", line):
            section = header[1]
        elif commented := re.match(r"# ([a-z_]+) = ", line):
            documented.add((section, commented[1]))
    known = {
        (section, key)
        for section, field in Settings.model_fields.items()
        for key in (entries.get(section) or field.annotation).model_fields  # type: ignore[union-attr]
    }
    assert documented == known
    assert load_settings(EXAMPLE, environ={}).packs["10k"].credits == 10_000


def test_an_empty_database_url_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="CREDITSD_DATABASE_URL is set but empty"):
        load_settings(os.devnull, environ={"CREDITSD_DATABASE_URL": ""})


def test_the_example_is_the_defaults_but_for_what_its_header_says_it_changes() -> None:
    """Copying the example changes only the sign-up grant and adds its sample packs and
    plan: its catalog is the built-in one, as it says, so copying it prices nothing
    differently (it once added a 20 % markup on Claude)."""
    example = load_settings(EXAMPLE, environ={}).model_dump(mode="json")
    default = load_settings(os.devnull, environ={}).model_dump(mode="json")
    assert example["accounts"].pop("signup_grant") == "100"  # credits, as a decimal
    assert set(example.pop("packs")) == {"1k", "10k", "100k"}
    assert set(example.pop("plans")) == {"cplan_pro_REPLACE"}
    assert (default.pop("packs"), default.pop("plans")) == ({}, {})
    del default["accounts"]["signup_grant"]
    assert example == default
    header = EXAMPLE.read_text().split("\n\n", 1)[0]
    assert "signup_grant" in header and "packs" in header and "plans" in header
