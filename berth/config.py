"""One typed configuration. Every field can be set from the environment as BERTH_<NAME>."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from berth.storage.urls import FileStorage, S3Storage, StorageUrlError, parse_storage_url

CONFIG_VERSION = 1
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")  # us-east-1, us-gov-west-1, cn-north-1, …
NOT_SETTINGS = frozenset({"BERTH_STRICT"})  # read by the test suite, not by the server


class ConfigError(ValueError):
    pass


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path("./berth-data")
    database_url: str = ""  # empty: SQLite under data_dir
    tls_cert: str = ""
    tls_key: str = ""
    workers: int = 1
    auth: str = "iam"
    create_on_push: bool = False
    default_account: str = DEFAULT_ACCOUNT
    default_region: str = DEFAULT_REGION
    regions: str = ""  # the regions served, comma-separated; the default region always is one
    oidc_jwks_dir: str = ""  # web identity without network: <dir>/<issuer host_path>.json holds its JWKS
    registry_domain: str = "localhost"
    upload_max_age_hours: int = 168
    job_workers: int = 2  # jobs run at once by each serving process (and by `berth worker`); 0: none in serve
    job_lease_seconds: int = 30  # a job whose worker stops heartbeating is claimed again after this
    log_level: str = "warning"
    admin_access_key_id: str = ""  # the default account's first administrator key, when set
    admin_secret_access_key: str = ""
    storage_url: str = ""  # empty: the filesystem under data_dir; file:///path or s3://bucket/prefix?…
    storage_redirect: bool = False  # blob GETs answer 307 to a presigned URL when the driver has one
    db_pool_min_size: int = 1  # PostgreSQL connections each process keeps open (per granian worker)
    db_pool_max_size: int = 16  # at most this many per process: size max_connections for all nodes
    db_connect_timeout: int = 5  # seconds to reach PostgreSQL before a request answers 503 (retryable)

    def __post_init__(self) -> None:
        if self.auth not in ("none", "iam"):
            raise ConfigError(f"unknown auth mode {self.auth!r} (none|iam)")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ConfigError(f"unsupported database URL {self.database_url!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.job_workers < 0:
            raise ConfigError("--job-workers must be 0 (off) or more")
        if self.job_lease_seconds < 1:
            raise ConfigError("BERTH_JOB_LEASE_SECONDS must be at least 1")
        if not 0 <= self.db_pool_min_size <= self.db_pool_max_size or self.db_pool_max_size < 1:
            raise ConfigError("BERTH_DB_POOL_MIN_SIZE must be 0..BERTH_DB_POOL_MAX_SIZE, and the max at least 1")
        if self.db_connect_timeout < 1:
            raise ConfigError("BERTH_DB_CONNECT_TIMEOUT must be at least 1 (seconds)")
        self.storage  # noqa: B018 - an unknown scheme or a malformed storage URL fails here, at start-up
        self._check_regions()

    @property
    def storage(self) -> FileStorage | S3Storage:
        try:
            return parse_storage_url(self.storage_url, self.data_dir)
        except StorageUrlError as e:
            raise ConfigError(str(e)) from None

    def _check_regions(self) -> None:
        for region in self.served_regions:
            if not _REGION.fullmatch(region):
                raise ConfigError(f"not an AWS region name: {region!r} (BERTH_REGIONS, BERTH_DEFAULT_REGION)")

    @property
    def served_regions(self) -> tuple[str, ...]:
        """The default region, then the others of BERTH_REGIONS: a request signed for any other is refused."""
        listed = [r.strip() for r in self.regions.split(",") if r.strip()]
        return tuple(dict.fromkeys([self.default_region, *listed]))

    @property
    def sqlite_path(self) -> Path:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url[len("sqlite:///"):])
        return self.data_dir / "berth.db"

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then BERTH_* variables, then explicit overrides (CLI flags)."""
        env = dict(os.environ) if env is None else env
        known = {"BERTH_" + f.name.upper() for f in fields(cls)} | NOT_SETTINGS
        unknown = sorted(k for k in env if k.startswith("BERTH_") and k not in known)
        if unknown:  # a misspelt setting must not be ignored silently
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get("BERTH_" + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"]))
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The inverse of from_env: how `serve` hands settings to its worker processes."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out["BERTH_" + f.name.upper()] = ("1" if v else "0") if isinstance(v, bool) else str(v)
        return out


def _convert(name: str, typ: object, raw: str) -> object:
    t = str(typ)
    try:
        if t == "int":
            return int(raw)
        if t == "bool":
            return _parse_bool(raw)
    except ValueError as e:
        raise ConfigError(f"BERTH_{name.upper()}: {e}") from None
    return raw
