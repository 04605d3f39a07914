"""One typed configuration. Every field can be set from the environment as BERTH_<NAME>."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from berth.storage.urls import FileStorage, S3Storage, StorageUrlError, parse_storage_url

if TYPE_CHECKING:
    from berth.replication.config_peers import ConfigPeer

CONFIG_VERSION = 1
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")  # us-east-1, us-gov-west-1, cn-north-1, …
NOT_SETTINGS = frozenset({"BERTH_STRICT",  # read by the test suite, not by the server
                          "BERTH_CONFIG",  # the config file itself
                          "BERTH_METRICS_DIR"})  # set by serve for its workers (berth/observe/metrics.py)


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
    lifecycle_interval_hours: int = 24  # how often every repository's lifecycle policy is applied
    lifecycle_preview_retention_seconds: int = 86400  # a COMPLETE preview is readable this long, then EXPIRED
    log_level: str = "warning"
    log_format: str = "json"  # the access log and Berth's own lines: json (one object a line) | text
    access_log: bool = True  # one line per request on stderr
    metrics_public: bool = False  # /metrics without authentication; else IAM action berth:GetMetrics
    database_wait_seconds: int = 30  # serve waits this long for PostgreSQL to answer, saying so
    admin_access_key_id: str = ""  # the default account's first administrator key, when set
    admin_secret_access_key: str = ""
    storage_url: str = ""  # empty: the filesystem under data_dir; file:///path or s3://bucket/prefix?…
    storage_redirect: bool = False  # blob GETs answer 307 to a presigned URL when the driver has one
    archive_storage_url: str = ""  # empty: archived images' blobs stay where they are; else a second storage URL
    gc_grace_seconds: int = 3600  # garbage collection spares a blob linked (or read) this recently
    gc_interval_seconds: int = 21600  # the periodic collection's interval; 0: only `berth gc`
    gc_pin_hold_seconds: int = 900  # an upload's pin keeps its digest this long, whatever the grace
    pull_through_insecure: str = ""  # pull-through upstreams (host or host:port, comma-separated) allowed plain http
    pull_through_staleness_hours: float = 24.0  # a cached tag is checked against its upstream at most this often
    master_key_file: str = ""  # the key that seals secrets in the database; empty: <data_dir>/keys/master.key
    audit: bool = True  # the audit trail of control-plane calls and registry writes (`berth audit`)
    audit_retention_days: int = 90  # records older than this are pruned (hourly); 0: kept forever
    rate_limit_account: int = 0  # requests per second per account, per node (berth/api/limits.py); 0: off
    rate_limit_account_burst: int = 0  # the account bucket's size; 0: twice the rate
    rate_limit_principal: int = 0  # requests per second per principal (user, role session), per node; 0: off
    rate_limit_principal_burst: int = 0
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
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range (1-65535)")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"unknown log format {self.log_format!r} (json|text)")
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"unknown log level {self.log_level!r} (debug|info|warning|error|critical)")
        if self.database_wait_seconds < 0:
            raise ConfigError("--database-wait-seconds must be 0 or more")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.job_workers < 0:
            raise ConfigError("--job-workers must be 0 (off) or more")
        if self.job_lease_seconds < 1:
            raise ConfigError("BERTH_JOB_LEASE_SECONDS must be at least 1")
        if self.lifecycle_interval_hours <= 0:
            raise ConfigError("BERTH_LIFECYCLE_INTERVAL_HOURS must be positive")
        if self.lifecycle_preview_retention_seconds < 1:
            raise ConfigError("BERTH_LIFECYCLE_PREVIEW_RETENTION_SECONDS must be at least 1")
        if min(self.gc_grace_seconds, self.gc_interval_seconds, self.gc_pin_hold_seconds) < 0:
            raise ConfigError("BERTH_GC_GRACE_SECONDS, BERTH_GC_INTERVAL_SECONDS and BERTH_GC_PIN_HOLD_SECONDS "
                              "must be 0 or more")
        if min(self.rate_limit_account, self.rate_limit_account_burst, self.rate_limit_principal,
               self.rate_limit_principal_burst) < 0:
            raise ConfigError("BERTH_RATE_LIMIT_* must be 0 (off) or more")
        if self.audit_retention_days < 0:
            raise ConfigError("BERTH_AUDIT_RETENTION_DAYS must be 0 (keep forever) or more")
        if not 0 <= self.db_pool_min_size <= self.db_pool_max_size or self.db_pool_max_size < 1:
            raise ConfigError("BERTH_DB_POOL_MIN_SIZE must be 0..BERTH_DB_POOL_MAX_SIZE, and the max at least 1")
        if self.db_connect_timeout < 1:
            raise ConfigError("BERTH_DB_CONNECT_TIMEOUT must be at least 1 (seconds)")
        self.storage  # noqa: B018 - an unknown scheme or a malformed storage URL fails here, at start-up
        self.archive_storage  # noqa: B018 - and so does the archive's
        self._check_regions()

    @property
    def storage(self) -> FileStorage | S3Storage:
        try:
            return parse_storage_url(self.storage_url, self.data_dir)
        except StorageUrlError as e:
            raise ConfigError(str(e)) from None

    @property
    def archive_storage(self) -> FileStorage | S3Storage | None:
        """Where blobs that only archived images use are moved (berth/lifecycle/archive.py); None: nowhere."""
        if not self.archive_storage_url.strip():
            return None
        try:
            archive = parse_storage_url(self.archive_storage_url, self.data_dir)
        except StorageUrlError as e:
            raise ConfigError(f"BERTH_ARCHIVE_STORAGE_URL: {e}") from None
        if archive == self.storage:
            raise ConfigError("BERTH_ARCHIVE_STORAGE_URL names the main storage itself")
        return archive

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
    def master_key_path(self) -> Path:
        return Path(self.master_key_file) if self.master_key_file else self.data_dir / "keys" / "master.key"

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, config: Path | str | None = None,
                 **overrides: object) -> Settings:
        """Defaults, then the config file (`config`, else BERTH_CONFIG), then BERTH_* variables, then
        explicit overrides (CLI flags)."""
        env = dict(os.environ) if env is None else env
        path = config if config is not None else env.get("BERTH_CONFIG") or None
        base = read_config_file(Path(path)) if path is not None else {}
        known = {"BERTH_" + f.name.upper() for f in fields(cls)} | NOT_SETTINGS
        unknown = sorted(k for k in env if k.startswith("BERTH_") and k not in known)
        if unknown:  # a misspelt setting must not be ignored silently
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, object] = dict(base)
        for f in fields(cls):
            raw = env.get("BERTH_" + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"]))
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as e:
            if path is None:
                raise
            raise ConfigError(f"{e} (from config file {path}, BERTH_* variables or flags)") from None

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
        if t == "float":
            return float(raw)
    except ValueError as e:
        raise ConfigError(f"BERTH_{name.upper()}: {e}") from None
    return raw


SECRET_FIELDS = frozenset({"admin_secret_access_key"})


def read_config_file(path: Path) -> dict[str, object]:
    """A TOML config file as Settings values: `version = 1`, then any Settings field (as its option is
    spelt on the command line, `data-dir`, or as its variable, `data_dir`). Unknown keys, wrong types and a
    file that does not parse are ConfigErrors naming the file (and the line)."""
    import tomllib

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line N, column M)" or "(at end of document)"
        lines = raw.count(b"\n") + 1
        where = "" if "line" in str(e) else f" (line {lines})"
        raise ConfigError(f"config file {path}: {e}{where}") from None
    version = doc.pop("version", None)
    if version is None:
        raise ConfigError(f"config file {path}: no `version = {CONFIG_VERSION}` line")
    if version != CONFIG_VERSION:
        raise ConfigError(f"config file {path}: version {version!r} is not one this berth reads ({CONFIG_VERSION})")
    if "peers" in doc:  # [peers.<name>]: replication peers, not Settings (berth/replication/config_peers.py)
        from berth.replication.config_peers import parse

        try:
            parse(doc.pop("peers"))
        except ValueError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, object] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in types:
            known = ", ".join(sorted(n.replace("_", "-") for n in types))
            raise ConfigError(f"config file {path}: unknown setting {key!r}; known: version, {known}")
        t = str(types[name])
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {"int": number and isinstance(value, int), "float": number, "bool": isinstance(value, bool)}.get(
            t, isinstance(value, str))
        if not ok:
            want = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(t, "a string")
            raise ConfigError(f"config file {path}: {key} must be {want}, not {value!r}")
        values[name] = Path(value) if name == "data_dir" else float(value) if t == "float" else value
    return values


def read_config_peers(path: Path) -> list[ConfigPeer]:
    """The file's `[peers.<name>]` tables, after every check of read_config_file."""
    import tomllib

    from berth.replication.config_peers import parse

    read_config_file(path)
    return parse(tomllib.loads(path.read_text("utf-8")).get("peers", {}))


def effective(settings: Settings) -> dict[str, object]:
    """Every setting as it stands, secrets masked: what `berth config show` prints."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    out: dict[str, object] = {}
    for f in fields(settings):
        v = getattr(settings, f.name)
        if f.name in SECRET_FIELDS and v:
            v = "***"
        elif f.name in ("database_url", "storage_url", "archive_storage_url") and v:
            parts = urlsplit(str(v))
            if parts.password is not None:
                parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}")
            query = [(k, "***" if "secret" in k.lower() or "password" in k.lower() else q)
                     for k, q in parse_qsl(parts.query, keep_blank_values=True)]
            v = urlunsplit(parts._replace(query=urlencode(query, safe="*/:")))
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out
