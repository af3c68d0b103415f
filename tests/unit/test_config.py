"""Production refuses weak or placeholder secrets at start, naming the setting and never the value."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, load_settings, tls_context
from tests.certificates import self_signed

ROOT = Path(__file__).resolve().parents[2]
# Random, as an operator would generate them: python -c 'import secrets; print(secrets.token_hex(32))'
PEPPER = "f87be7fb52d01d5dc858ffbc54b039b9e809b6bd610eb9523d7f75a9faf291d1"
KEY = "63fb0cff17cb98177c4e330c45d80a07e8f229d99b836f4d2f5c212bcf772381"
DB_PASSWORD = "bISY1VqN1UBpT68wFLnZUYMbAgxT_WKA"


def production(**variables: str) -> dict[str, str]:
    return {
        "MEDSETTLE_ENV": "production",
        "MEDSETTLE_ID_PEPPER": PEPPER,
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY,
        "DATABASE_URL": f"postgresql://medsettle:{DB_PASSWORD}@db.internal:5432/medsettle",
        **variables,
    }


def refusal(environ: dict[str, str], *hidden: str) -> str:
    """The start-up refusal's text, after checking that none of ``hidden`` appears in it."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    for value in hidden:
        if len(value) >= 6:  # a shorter value cannot be told apart from the message's own words
            assert value not in message, "a secret's value reached the error message"
    return message


def test_production_starts_with_strong_secrets():
    settings = load_settings(production())
    assert settings.id_pepper == PEPPER.encode()
    assert settings.terminal_key_key == bytes.fromhex(KEY)


def test_a_short_pepper_is_refused():
    pepper = "9f3a1c7e5b2d"  # 12 characters
    message = refusal(production(MEDSETTLE_ID_PEPPER=pepper), pepper)
    assert re.search(r"MEDSETTLE_ID_PEPPER: shorter than 16 characters", message)


@pytest.mark.parametrize(
    "pepper",
    ["a", "x" * 64, "ab" * 32, "0123" * 16],
    ids=["one-character", "one-character-repeated", "two-character-pattern", "four-character-pattern"],
)
def test_a_pepper_that_repeats_a_short_pattern_is_refused(pepper):
    message = refusal(production(MEDSETTLE_ID_PEPPER=pepper), pepper)
    assert "MEDSETTLE_ID_PEPPER: one character or a short pattern repeated" in message


@pytest.mark.parametrize(
    "pepper",
    [
        "change-me-64-hex-characters-0f3a9c",
        "ChangeMe-9f3a1c7e5b2d4a6f8e0c",
        "change_me_9f3a1c7e5b2d4a6f8e0c",
        "pepper.example.9f3a1c7e5b2d4a6f",
        "my-SECRET-pepper-9f3a1c7e5b2d",
        "password9f3a1c7e5b2d4a6f8e0c",
        "test-pepper-9f3a1c7e5b2d4a6f",
        "9f3a1c7e5b2dxxx4a6f8e0c7d1b",
        "placeholder-9f3a1c7e5b2d4a6f",
    ],
)
def test_a_pepper_with_a_placeholder_word_is_refused(pepper):
    message = refusal(production(MEDSETTLE_ID_PEPPER=pepper), pepper)
    assert "MEDSETTLE_ID_PEPPER: contains a placeholder word" in message


def test_an_all_zero_key_is_refused():
    key = "00" * 32
    message = refusal(production(MEDSETTLE_TERMINAL_KEY_KEY=key), key)
    assert "MEDSETTLE_TERMINAL_KEY_KEY: one character or a short pattern repeated" in message


def test_a_key_with_too_few_distinct_bytes_is_refused():
    key = ("00" * 15 + "01") * 2  # 64 hex characters, no short period, two distinct bytes
    message = refusal(production(MEDSETTLE_TERMINAL_KEY_KEY=key), key)
    assert "MEDSETTLE_TERMINAL_KEY_KEY: too few distinct bytes to be random" in message


def test_a_placeholder_key_is_refused_as_a_placeholder_not_as_bad_hex():
    key = "CHANGE-ME-TO-64-HEX-CHARACTERS"
    message = refusal(production(MEDSETTLE_TERMINAL_KEY_KEY=key), key)
    assert "MEDSETTLE_TERMINAL_KEY_KEY: contains a placeholder word" in message


def test_the_pepper_and_the_key_must_differ():
    message = refusal(production(MEDSETTLE_ID_PEPPER=KEY), KEY)
    assert "MEDSETTLE_ID_PEPPER and MEDSETTLE_TERMINAL_KEY_KEY are the same value" in message


def test_a_placeholder_database_password_is_refused():
    password = "change-me-postgres-password"
    url = f"postgresql://medsettle:{password}@postgres:5432/medsettle"
    message = refusal(production(DATABASE_URL=url), password)
    assert "DATABASE_URL password: contains a placeholder word" in message
    replica = refusal(production(REPORTS_DATABASE_URL=url), password)
    assert "REPORTS_DATABASE_URL password: contains a placeholder word" in replica


def test_the_database_password_must_differ_from_the_pepper():
    url = f"postgresql://medsettle:{PEPPER}@postgres:5432/medsettle"
    message = refusal(production(DATABASE_URL=url), PEPPER)
    assert "MEDSETTLE_ID_PEPPER and DATABASE_URL password are the same value" in message


def test_a_database_url_without_a_password_is_accepted():
    # Certificate or peer authentication: no password in the URL, nothing to judge.
    settings = load_settings(production(DATABASE_URL="postgresql://medsettle@db.internal:5432/medsettle"))
    assert settings.database_url == "postgresql://medsettle@db.internal:5432/medsettle"


def test_every_weak_secret_is_named_in_one_refusal():
    environ = production(MEDSETTLE_ID_PEPPER="9f3a1c7e", MEDSETTLE_TERMINAL_KEY_KEY="00" * 32)
    message = refusal(environ, "9f3a1c7e", "00" * 32)
    assert "MEDSETTLE_ID_PEPPER:" in message
    assert "MEDSETTLE_TERMINAL_KEY_KEY:" in message
    assert "secrets.token_hex(32)" in message  # and how to make good ones


def _template_secrets() -> dict[str, str]:
    """Secret values the deploy/ templates ship: the compose .env example and the Kubernetes Secret example."""
    found: dict[str, str] = {}
    for line in (ROOT / "deploy/compose/.env.example").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if name in ("MEDSETTLE_ID_PEPPER", "MEDSETTLE_TERMINAL_KEY_KEY", "POSTGRES_PASSWORD"):
            found[f"compose {name}"] = value
    secret = yaml.safe_load((ROOT / "deploy/k8s/secret.example.yaml").read_text(encoding="utf-8"))
    for name, value in secret["stringData"].items():
        found[f"k8s {name}"] = value
    return found


@pytest.mark.parametrize("source", sorted(_template_secrets()))
def test_the_deploy_templates_placeholders_are_refused(source):
    value = _template_secrets()[source]
    name = source.split(" ", 1)[1]
    if name == "POSTGRES_PASSWORD":
        environ = production(DATABASE_URL=f"postgresql://medsettle:{value}@postgres:5432/medsettle")
        setting = "DATABASE_URL password"
    else:
        environ = production(**{name: value})
        setting = "DATABASE_URL password" if name == "DATABASE_URL" else name
    message = refusal(environ, value)
    assert f"{setting}:" in message


def test_development_keeps_accepting_what_it_accepts_today(tmp_path):
    settings = load_settings(
        {
            "MEDSETTLE_DATA_DIR": str(tmp_path),
            "MEDSETTLE_ID_PEPPER": "x",
            "MEDSETTLE_TERMINAL_KEY_KEY": "00" * 32,
            "DATABASE_URL": "postgresql://medsettle:change-me@localhost/medsettle",
        }
    )
    assert settings.id_pepper == b"x"
    assert settings.terminal_key_key == bytes(32)
    generated = load_settings({"MEDSETTLE_DATA_DIR": str(tmp_path / "fresh")})
    assert len(generated.terminal_key_key) == 32 and generated.id_pepper


def test_tls_needs_both_files_that_belong_together(tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    assert tls_context(load_settings({}, data_dir=str(tmp_path))) is None  # plain HTTP behind a proxy
    served = load_settings(
        {"MEDSETTLE_TLS_CERT_FILE": str(cert_file), "MEDSETTLE_TLS_KEY_FILE": str(key_file)}, data_dir=str(tmp_path)
    )
    context = tls_context(served)
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="both MEDSETTLE_TLS_CERT_FILE and MEDSETTLE_TLS_KEY_FILE"):
        load_settings({"MEDSETTLE_TLS_CERT_FILE": str(cert_file)}, data_dir=str(tmp_path))
    _, other_key = self_signed(tmp_path / "other")
    key_text = other_key.read_text()
    with pytest.raises(ConfigError, match="cannot be loaded") as refused:
        load_settings(
            {"MEDSETTLE_TLS_CERT_FILE": str(cert_file), "MEDSETTLE_TLS_KEY_FILE": str(other_key)},
            data_dir=str(tmp_path),
        )
    assert key_text.splitlines()[1] not in str(refused.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(
            {"MEDSETTLE_TLS_CERT_FILE": str(tmp_path / "missing.crt"), "MEDSETTLE_TLS_KEY_FILE": str(key_file)},
            data_dir=str(tmp_path),
        )
