"""Configuration from environment variables (prefix ``MEDSETTLE_``, plus ``DATABASE_URL``).

In ``development`` (the default) a missing ID pepper is generated once and kept
in the data folder, so the demo works with nothing set. In ``production`` the
gateway refuses to start without one, and refuses weak or placeholder secrets
(``production_secret_problems``).
"""

from __future__ import annotations

import os
import secrets
import ssl
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from adapters.faults import FaultConfigError, Faults


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    reader_port: int = 8081  # card readers' TCP listener; 0 turns it off
    # The HTTP port serves TLS with this certificate (chain, PEM) and key, for a gateway with no proxy
    # in front; unset, plain HTTP behind a proxy that terminates TLS (deploy/compose/nginx.conf, Ingress).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Processes sharing host:port through SO_REUSEPORT under a supervising parent (gateway/http/workers.py).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    database_url: str | None = None
    reports_database_url: str | None = None  # a read replica for reports; the settle path never uses it
    data_dir: str = ".data"
    id_pepper: bytes = b""
    pool_min: int = 2
    pool_max: int = 12
    pool_acquire_timeout: float = 5.0
    max_body_bytes: int = 1024 * 1024
    max_lines: int = 2000  # a two-week county admission, itemised day by day
    log_format: Literal["json", "console"] | None = None  # None: console on a terminal, else JSON
    log_level: str = "info"
    policy_dir: str | None = None
    terminal_key_key: bytes = b""
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    shutdown_timeout: float = 20.0
    # After SIGTERM: readiness fails at once, but requests are still taken for this long so load balancers
    # stop routing here before the listener closes (gateway/http/shutdown.py).
    shutdown_drain_seconds: float = 5.0
    # Every HTTP request is answered within this many seconds: 503 deadline_exceeded past it. Less than
    # shutdown_timeout, so a request taken while draining finishes before the process stops.
    request_timeout: float = 10.0
    # A client's own slowness, answered apart from the server's: a request's header must arrive whole within
    # header_timeout seconds of the connection opening or of the request's first byte (else the connection
    # is closed, after a 408 if part of a header came), and its body within body_timeout seconds of the
    # header (else 408 request_timeout). Idle keep-alive connections between requests are not cut.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    future_date_tolerance_days: int = 1
    settle_batch_max: int = 32  # concurrent settlements committed together (adapters/batching.py); 1 turns it off
    settle_batch_lanes: int = 4  # batches in flight at once, each on its own pooled connection
    # Person-years re-adjudicated a second at most, per process, in the background (adapters/readjudication.py);
    # 0 leaves the list to `medsettle adjustments run`.
    readjudicate_per_second: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    # The insurer's core for chains with remote steps: overrides the policy's [insurer] url (a test
    # simulator's port, a site's own address); empty: the policy's.
    insurer_url: str = ""
    # How long the circuit breaker before the insurer stays open after five failures in a row (gateway/insurer.py).
    insurer_breaker_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    faults: str = ""  # named fault points for fault tests (adapters/faults.py); refused in production

    def masked(self) -> dict[str, object]:
        """For logging at start-up: secrets shown only as set or not."""
        shown = msgspec.structs.asdict(self)
        shown["id_pepper"] = "<set>" if self.id_pepper else "<unset>"
        shown["terminal_key_key"] = "<set>" if self.terminal_key_key else "<unset>"
        if self.database_url:
            shown["database_url"] = _mask_url(self.database_url)
        if self.reports_database_url:
            shown["reports_database_url"] = _mask_url(self.reports_database_url)
        return shown


class ConfigError(Exception):
    pass


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


ENV_VARS = {
    "environment": "MEDSETTLE_ENV",
    "host": "MEDSETTLE_HOST",
    "port": "MEDSETTLE_PORT",
    "reader_port": "MEDSETTLE_READER_PORT",
    "tls_cert_file": "MEDSETTLE_TLS_CERT_FILE",
    "tls_key_file": "MEDSETTLE_TLS_KEY_FILE",
    "workers": "MEDSETTLE_WORKERS",
    "database_url": "DATABASE_URL",
    "reports_database_url": "REPORTS_DATABASE_URL",
    "data_dir": "MEDSETTLE_DATA_DIR",
    "id_pepper": "MEDSETTLE_ID_PEPPER",
    "pool_min": "MEDSETTLE_POOL_MIN",
    "pool_max": "MEDSETTLE_POOL_MAX",
    "pool_acquire_timeout": "MEDSETTLE_POOL_ACQUIRE_TIMEOUT",
    "max_body_bytes": "MEDSETTLE_MAX_BODY_BYTES",
    "max_lines": "MEDSETTLE_MAX_LINES",
    "log_format": "MEDSETTLE_LOG_FORMAT",
    "log_level": "MEDSETTLE_LOG_LEVEL",
    "policy_dir": "MEDSETTLE_POLICY_DIR",
    "terminal_key_key": "MEDSETTLE_TERMINAL_KEY_KEY",
    "rate_limit_per_second": "MEDSETTLE_RATE_LIMIT_PER_SECOND",
    "rate_limit_burst": "MEDSETTLE_RATE_LIMIT_BURST",
    "shutdown_timeout": "MEDSETTLE_SHUTDOWN_TIMEOUT",
    "shutdown_drain_seconds": "MEDSETTLE_SHUTDOWN_DRAIN_SECONDS",
    "request_timeout": "MEDSETTLE_REQUEST_TIMEOUT",
    "header_timeout": "MEDSETTLE_HEADER_TIMEOUT",
    "body_timeout": "MEDSETTLE_BODY_TIMEOUT",
    "future_date_tolerance_days": "MEDSETTLE_FUTURE_DATE_TOLERANCE_DAYS",
    "readjudicate_per_second": "MEDSETTLE_READJUDICATE_PER_SECOND",
    "insurer_url": "MEDSETTLE_INSURER_URL",
    "insurer_breaker_seconds": "MEDSETTLE_INSURER_BREAKER_SECONDS",
    "settle_batch_max": "MEDSETTLE_SETTLE_BATCH_MAX",
    "settle_batch_lanes": "MEDSETTLE_SETTLE_BATCH_LANES",
    "faults": "MEDSETTLE_FAULTS",
}


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, object] = {}
    for field, variable in ENV_VARS.items():
        if variable in environ and environ[variable] != "":
            raw[field] = environ[variable]
    raw.update({key: value for key, value in overrides.items() if value is not None})
    pepper = raw.pop("id_pepper", None)
    kek_hex = raw.pop("terminal_key_key", None)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        variable = _variable_for(str(error))
        raise ConfigError(f"configuration {variable}: {error}") from None
    production = settings.environment == "production"
    if not pepper and production:
        raise ConfigError(
            "MEDSETTLE_ID_PEPPER is not set. In production the national-ID pepper must come from a secret;"
            " generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if not kek_hex and production:
        raise ConfigError(
            "MEDSETTLE_TERMINAL_KEY_KEY is not set. In production the terminal-key encryption key must come from a"
            " secret: 64 hex characters, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if production:
        problems = production_secret_problems(str(pepper), str(kek_hex), _database_urls(settings))
        if problems:
            raise ConfigError(
                "production refuses weak or placeholder secrets (values not shown):\n"
                + "".join(f"  {problem}\n" for problem in problems)
                + "Generate each secret on its own with: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
    if settings.request_timeout <= 0 or settings.shutdown_drain_seconds < 0:
        raise ConfigError("MEDSETTLE_REQUEST_TIMEOUT must be above 0 and MEDSETTLE_SHUTDOWN_DRAIN_SECONDS at least 0")
    if settings.header_timeout <= 0 or settings.body_timeout <= 0:
        raise ConfigError("MEDSETTLE_HEADER_TIMEOUT and MEDSETTLE_BODY_TIMEOUT must be above 0")
    tls_context(settings)  # a missing, unreadable or mismatched certificate is refused before anything starts
    if settings.faults:
        if production:
            raise ConfigError("MEDSETTLE_FAULTS injects failures for fault tests and is refused in production")
        try:
            Faults.parse(settings.faults)
        except FaultConfigError as error:
            raise ConfigError(str(error)) from None
    data_dir = Path(settings.data_dir)
    pepper_bytes = str(pepper).encode() if pepper else _development_secret(data_dir / "id-pepper")
    kek_text = str(kek_hex) if kek_hex else _development_secret(data_dir / "terminal-key-key").decode()
    try:
        kek = bytes.fromhex(kek_text)
    except ValueError:
        kek = b""
    if len(kek) != 32:
        raise ConfigError("MEDSETTLE_TERMINAL_KEY_KEY must be 64 hex characters (a 256-bit key)")
    return msgspec.structs.replace(settings, id_pepper=pepper_bytes, terminal_key_key=kek)


# Production secret rules. The pepper keys the national-ID HMAC: it is all that stands between a copied
# table and the ~10^11 possible ID numbers, so it must be long and random (token_hex(32) gives 64
# characters). The terminal-key key is 32 bytes by format; these rules catch the values people type
# instead of generating one. A random secret passes them all but with negligible chance of refusal
# (hex cannot spell any of the words; 32 random bytes have fewer than 16 distinct values with odds
# below 1e-16).
MIN_PEPPER_CHARS = 16
MIN_KEY_DISTINCT_BYTES = 16
SHORT_PATTERN = 4  # a value that is one unit of up to this many characters repeated
PLACEHOLDER_WORDS = (
    "change-me",
    "changeme",
    "change_me",
    "example",
    "placeholder",
    "secret",
    "password",
    "test",
    "xxx",
)
# What deploy/compose/.env.example and deploy/k8s/secret.example.yaml ship (tests/unit/test_config.py
# reads the templates and checks each is refused, so this list cannot fall behind them).
TEMPLATE_SECRETS = frozenset(
    {
        "change-me",
        "change-me-64-hex-characters",
        "change-me-postgres-password",
        "0" * 64,  # the compose key: caught as a repeated pattern first
    }
)


def production_secret_problems(pepper: str, key_hex: str, database_urls: dict[str, str]) -> list[str]:
    """Why each secret is unfit for production, naming the setting and never its value; empty when all pass."""
    problems = []
    pepper_problem = _weakness(pepper) or (
        f"shorter than {MIN_PEPPER_CHARS} characters" if len(pepper) < MIN_PEPPER_CHARS else None
    )
    if pepper_problem:
        problems.append(f"MEDSETTLE_ID_PEPPER: {pepper_problem}")
    key_problem = _weakness(key_hex)
    if key_problem is None:
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            key = b""  # the format check after this one says what is wrong
        if len(key) == 32 and len(set(key)) < MIN_KEY_DISTINCT_BYTES:
            key_problem = "too few distinct bytes to be random"
    if key_problem:
        problems.append(f"MEDSETTLE_TERMINAL_KEY_KEY: {key_problem}")
    named = {"MEDSETTLE_ID_PEPPER": pepper, "MEDSETTLE_TERMINAL_KEY_KEY": key_hex}
    for variable, url in database_urls.items():
        try:
            password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "")
        except ValueError:  # not a URL: asyncpg says so when it connects
            password = ""
        if password:
            password_problem = _weakness(password)
            if password_problem:
                problems.append(f"{variable} password: {password_problem}")
            named[f"{variable} password"] = password
    names = list(named)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            if {first, second} == {"DATABASE_URL password", "REPORTS_DATABASE_URL password"}:
                continue  # the primary and its read replica may well share a login
            if named[first].strip().lower() == named[second].strip().lower():
                problems.append(f"{first} and {second} are the same value; each secret must be generated on its own")
    return problems


def _weakness(value: str) -> str | None:
    lowered = value.strip().lower()
    if any(lowered == lowered[:unit] * (len(lowered) // unit) for unit in range(1, SHORT_PATTERN + 1)):
        return "one character or a short pattern repeated"
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        return f"contains a placeholder word ({', '.join(PLACEHOLDER_WORDS)})"
    if lowered in TEMPLATE_SECRETS:
        return "the placeholder from the deploy/ templates"
    return None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server-side TLS context for the HTTP port, or None for plain HTTP (no certificate set).

    Python's defaults for a server: TLS 1.2 or later, the ciphers OpenSSL deems secure.
    """
    if not settings.tls_cert_file and not settings.tls_key_file:
        return None
    if not settings.tls_cert_file or not settings.tls_key_file:
        raise ConfigError("set both MEDSETTLE_TLS_CERT_FILE and MEDSETTLE_TLS_KEY_FILE to serve TLS, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except ssl.SSLError as error:  # not PEM, or the key is not the certificate's
        raise ConfigError(f"{_TLS_FILES} cannot be loaded: {error.reason or type(error).__name__}") from None
    except OSError as error:  # no such file, no permission
        raise ConfigError(f"{_TLS_FILES} cannot be read: {error.strerror or type(error).__name__}") from None
    return context


_TLS_FILES = "MEDSETTLE_TLS_CERT_FILE / MEDSETTLE_TLS_KEY_FILE"


def _database_urls(settings: Settings) -> dict[str, str]:
    urls = {"DATABASE_URL": settings.database_url, "REPORTS_DATABASE_URL": settings.reports_database_url}
    return {variable: url for variable, url in urls.items() if url}


def _variable_for(message: str) -> str:
    for field, variable in ENV_VARS.items():
        if f"`$.{field}`" in message:
            return variable
    return "value"


def _development_secret(path: Path) -> bytes:
    """A secret generated once per data folder (development only), so demo data keeps working across restarts."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    path.write_bytes(secret)
    path.chmod(0o600)
    return secret
