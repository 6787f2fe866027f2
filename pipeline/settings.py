"""Environment -> typed settings. One place reads the environment; everything else takes a Settings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_USER_AGENT = "cliniko-reviews (ops@example.com)"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class AdminToken:
    """A token of the admin API: who uses it (its name, never the token, is what logs and errors show) and
    whether it may change the registry (`write`) or only read it (`read`)."""

    name: str
    role: str
    token: str = field(repr=False)


def _admin_tokens(value: str | None) -> tuple[AdminToken, ...]:
    tokens = []
    for position, entry in enumerate((value or "").split(","), start=1):
        if not entry.strip():
            continue
        name, role, token = (part.strip() for part in (entry.split(":", 2) + ["", ""])[:3])
        if not name or role not in ("read", "write") or len(token) < 8:
            raise ValueError(
                f"ADMIN_TOKENS entry {position} is not name:role:token with role read or write and a "
                "token of at least 8 characters"
            )
        tokens.append(AdminToken(name, role, token))
    return tuple(tokens)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    cliniko_base_url: str | None
    birdeye_base_url: str
    cliniko_user_agent: str
    cliniko_rate_limit_per_minute: int
    # The window the limit above counts over: Cliniko's is 60 s; benchmarks and tests shrink it.
    cliniko_rate_limit_window_seconds: float
    birdeye_rate_limit_per_second: float
    birdeye_concurrency: int
    admin_token: str | None = field(repr=False)
    registry_secret_key: str | None = field(repr=False)
    # Where alerts are posted as JSON (SPEC §8); secret like a key, since webhook URLs carry a token.
    alert_webhook_url: str | None = field(default=None, repr=False)
    # `DATABASE_URL` (postgresql://user:password@host:port/database): the shared state goes to PostgreSQL,
    # so that hosts can share it (docs/scaling.md). Unset, everything stays in files under DATA_DIR.
    database_url: str | None = field(default=None, repr=False)
    # `ADMIN_ALLOWED_HOSTS` (comma list): with ADMIN_TOKEN, the Host names the admin API answers to (any if
    # unset). Without a token it answers to loopback names only (pipeline/registry/api.py).
    admin_allowed_hosts: tuple[str, ...] | None = None
    # `ADMIN_TOKENS` (`name:role:token`, comma-separated; role `read` or `write`): named tokens of the admin
    # API, beside `ADMIN_TOKEN`, which is a `write` token named `admin`.
    admin_named_tokens: tuple[AdminToken, ...] = field(default=(), repr=False)
    # `PARTITIONS_START` (YYYY-MM-DD): the first day of the `date` partitions
    # (pipeline/automation/partitions.py says what it is when unset).
    partitions_start: date | None = None

    @property
    def admin_tokens(self) -> tuple[AdminToken, ...]:
        """Every token the admin API accepts: `ADMIN_TOKEN` (a `write` token named `admin`) and
        `ADMIN_TOKENS`."""
        single = (AdminToken("admin", "write", self.admin_token),) if self.admin_token else ()
        return single + self.admin_named_tokens

    @property
    def dagster_postgres_url(self) -> str | None:
        """`database_url` with the driver Dagster's PostgreSQL storage needs (psycopg2), for dagster.yaml."""
        return self.database_url and self.database_url.replace("postgresql://", "postgresql+psycopg2://", 1)

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def registry_location(self) -> str:
        """Where the registry is, for messages: its file, or the PostgreSQL database (never the password)."""
        if self.database_url is None:
            return str(self.registry_path)
        parts = urlsplit(self.database_url)
        return f"PostgreSQL database {parts.path.lstrip('/')} on {parts.hostname}:{parts.port or 5432}"

    @property
    def warehouse_dir(self) -> Path:
        """One DuckDB file per integration group: writers of different groups never wait on each other."""
        return self.data_dir / "warehouse"

    def warehouse_path(self, group_id: int) -> Path:
        """The group's warehouse: its Cliniko rows, models, ledger and partition runs (all the cool-off and
        the scheduler need of it)."""
        return self.warehouse_dir / f"group-{group_id}.duckdb"

    def warehouse_paths(self) -> dict[int, Path]:
        """group id -> warehouse file, for the groups that have one (a group gets it at its first run)."""
        files = sorted(self.warehouse_dir.glob("group-*.duckdb")) if self.warehouse_dir.is_dir() else []
        return {
            int(p.stem.removeprefix("group-")): p for p in files if p.stem.removeprefix("group-").isdigit()
        }

    @property
    def alerts_path(self) -> Path:
        """The calendar's alerts (SPEC §8) of every group, in a file: small, written rarely."""
        return self.data_dir / "alerts.duckdb"

    @property
    def alerts(self) -> Path | str:
        """Where the alerts are (`pipeline.calendar.alerts`): in PostgreSQL with `DATABASE_URL`, so every host
        raises and resolves the same ones; else `alerts_path`."""
        return self.database_url or self.alerts_path

    @property
    def legacy_warehouse_path(self) -> Path:
        """Where releases before per-group files kept every group's data (split by `split_legacy`)."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def analytics_path(self) -> Path:
        return self.data_dir / "analytics.duckdb"

    @property
    def rate_limit_dir(self) -> Path:
        return self.data_dir / "rate_limits"

    @property
    def run_leases(self) -> Path | str:
        """Where the Dagster runs working on partitions keep their leases (see `pipeline.leases`): in
        PostgreSQL with `DATABASE_URL`, so a host can tell another host's run alive; else a directory."""
        return self.database_url or self.data_dir / "run_leases"

    def cliniko_base_url_for(self, shard: str) -> str:
        """`CLINIKO_BASE_URL` wins for every key when set; otherwise the key's shard host."""
        return self.cliniko_base_url or f"https://api.{shard}.cliniko.com/v1"


def load_settings() -> Settings:
    data_dir = Path(_env("DATA_DIR", "data")).expanduser()
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    return Settings(
        data_dir=data_dir,
        cliniko_base_url=_env("CLINIKO_BASE_URL"),
        birdeye_base_url=_env("BIRDEYE_BASE_URL", "https://api.birdeye.com/resources").rstrip("/"),
        cliniko_user_agent=_env("CLINIKO_USER_AGENT", DEFAULT_USER_AGENT),
        cliniko_rate_limit_per_minute=int(_env("CLINIKO_RATE_LIMIT_PER_MINUTE", "200")),
        cliniko_rate_limit_window_seconds=float(_env("CLINIKO_RATE_LIMIT_WINDOW_SECONDS", "60")),
        birdeye_rate_limit_per_second=float(_env("BIRDEYE_RATE_LIMIT_PER_SECOND", "10")),
        birdeye_concurrency=int(_env("BIRDEYE_CONCURRENCY", "8")),
        admin_token=_env("ADMIN_TOKEN"),
        registry_secret_key=_env("REGISTRY_SECRET_KEY"),
        alert_webhook_url=_env("ALERT_WEBHOOK_URL"),
        database_url=_database_url(_env("DATABASE_URL")),
        admin_allowed_hosts=_names(_env("ADMIN_ALLOWED_HOSTS")),
        admin_named_tokens=_admin_tokens(_env("ADMIN_TOKENS")),
        partitions_start=_day("PARTITIONS_START", _env("PARTITIONS_START")),
    )


def _day(name: str, value: str | None) -> date | None:
    """A date setting (YYYY-MM-DD), None when unset; a clear error naming the setting otherwise."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{name} must be a date written YYYY-MM-DD (e.g. 2026-09-01), not {value!r}"
        ) from None


def _names(value: str | None) -> tuple[str, ...] | None:
    """A comma list of host names, lower-cased; None when unset or empty."""
    names = tuple(name.strip().lower() for name in (value or "").split(",") if name.strip())
    return names or None


def in_postgres(where: Path | str | None) -> bool:
    """Whether a place of shared state (`Settings.alerts`, `Settings.run_leases`, ...) is the PostgreSQL of
    `DATABASE_URL` rather than a file or directory."""
    return isinstance(where, str) and where.startswith("postgresql://")


def _database_url(url: str | None) -> str | None:
    """`DATABASE_URL` as given, once it names PostgreSQL (the one server the shared state can live in). No
    error repeats it: it carries the password."""
    if url is not None and re.search(r"%(?![0-9A-Fa-f]{2})", url):
        raise ValueError(
            "DATABASE_URL has a '%' that does not start a percent-encoded character (such as %25 for '%' "
            "itself); percent-encode the user name and password"
        )
    if url is None or url.startswith("postgresql://"):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    if scheme == "postgres":  # Heroku's spelling; SQLAlchemy and Dagster want the full name
        return "postgresql://" + url.split("://", 1)[1]
    raise ValueError(
        f"DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/database); its scheme "
        f"is {scheme!r}. Unset it to keep the shared state in files under DATA_DIR."
    )
