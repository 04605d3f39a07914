"""Settings: defaults, BERTH_* variables, overrides, validation, and the to_env round trip."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from berth.config import DEFAULT_ACCOUNT, DEFAULT_REGION, NOT_SETTINGS, ConfigError, Settings
from berth.storage.urls import S3Storage

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 5000, 1)
    assert s.data_dir == Path("./berth-data")
    assert s.database_url == "" and not s.uses_postgres
    assert s.sqlite_path == Path("./berth-data/berth.db")
    assert s.create_on_push is False
    assert (s.default_account, s.default_region) == (DEFAULT_ACCOUNT, DEFAULT_REGION) == ("123456789012",
                                                                                           "us-east-1")
    assert s.upload_max_age_hours == 168


def test_every_field_from_the_environment() -> None:
    env = {
        "BERTH_HOST": "0.0.0.0",
        "BERTH_PORT": "8443",
        "BERTH_DATA_DIR": "/srv/berth",
        "BERTH_DATABASE_URL": "postgresql://berth@db:5432/berth",
        "BERTH_TLS_CERT": "/etc/berth/cert.pem",
        "BERTH_TLS_KEY": "/etc/berth/key.pem",
        "BERTH_WORKERS": "4",
        "BERTH_AUTH": "none",
        "BERTH_CREATE_ON_PUSH": "true",
        "BERTH_DEFAULT_ACCOUNT": "111122223333",
        "BERTH_DEFAULT_REGION": "eu-west-1",
        "BERTH_REGIONS": "us-east-1, eu-west-1,ap-south-1",
        "BERTH_OIDC_JWKS_DIR": "/etc/berth/jwks",
        "BERTH_REGISTRY_DOMAIN": "registry.example.com",
        "BERTH_UPLOAD_MAX_AGE_HOURS": "2",
        "BERTH_JOB_WORKERS": "0",
        "BERTH_JOB_LEASE_SECONDS": "5",
        "BERTH_LIFECYCLE_INTERVAL_HOURS": "12",
        "BERTH_LIFECYCLE_PREVIEW_RETENTION_SECONDS": "60",
        "BERTH_ARCHIVE_STORAGE_URL": "s3://K:S3CR3T@cold/berth?endpoint=http://127.0.0.1:7480",
        "BERTH_LOG_LEVEL": "debug",
        "BERTH_ADMIN_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "BERTH_ADMIN_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "BERTH_STORAGE_URL": "s3://layers/berth?endpoint=http://127.0.0.1:7480&region=eu-west-1",
        "BERTH_STORAGE_REDIRECT": "1",
        "BERTH_GC_GRACE_SECONDS": "600",
        "BERTH_GC_INTERVAL_SECONDS": "0",
        "BERTH_GC_PIN_HOLD_SECONDS": "120",
        "BERTH_PULL_THROUGH_INSECURE": "registry.lan:5000",
        "BERTH_PULL_THROUGH_STALENESS_HOURS": "0.5",
        "BERTH_LOG_FORMAT": "text",
        "BERTH_ACCESS_LOG": "0",
        "BERTH_METRICS_PUBLIC": "1",
        "BERTH_DATABASE_WAIT_SECONDS": "3",
        "BERTH_MASTER_KEY_FILE": "/run/secrets/berth-master.key",
        "BERTH_AUDIT": "0",
        "BERTH_AUDIT_RETENTION_DAYS": "30",
        "BERTH_RATE_LIMIT_ACCOUNT": "100",
        "BERTH_RATE_LIMIT_ACCOUNT_BURST": "200",
        "BERTH_RATE_LIMIT_PRINCIPAL": "10",
        "BERTH_RATE_LIMIT_PRINCIPAL_BURST": "0",
        "BERTH_DB_POOL_MIN_SIZE": "2",
        "BERTH_DB_POOL_MAX_SIZE": "8",
        "BERTH_DB_CONNECT_TIMEOUT": "3",
    }
    assert {"BERTH_" + f.name.upper() for f in fields(Settings)} == set(env)  # a new field needs a line here
    s = Settings.from_env(env)
    assert s.host == "0.0.0.0"
    assert s.port == 8443 and isinstance(s.port, int)
    assert s.pull_through_staleness_hours == 0.5 and s.pull_through_insecure == "registry.lan:5000"
    assert s.data_dir == Path("/srv/berth") and isinstance(s.data_dir, Path)
    assert s.uses_postgres
    assert (s.tls_cert, s.tls_key) == ("/etc/berth/cert.pem", "/etc/berth/key.pem")
    assert s.workers == 4
    assert s.auth == "none"
    assert s.create_on_push is True
    assert (s.default_account, s.default_region) == ("111122223333", "eu-west-1")
    assert s.served_regions == ("eu-west-1", "us-east-1", "ap-south-1")
    assert s.oidc_jwks_dir == "/etc/berth/jwks"
    assert s.registry_domain == "registry.example.com"
    assert s.upload_max_age_hours == 2
    assert (s.job_workers, s.job_lease_seconds) == (0, 5)
    assert s.storage_redirect is True
    assert (s.db_pool_min_size, s.db_pool_max_size, s.db_connect_timeout) == (2, 8, 3)
    assert s.storage == S3Storage("layers", "berth", "http://127.0.0.1:7480", "eu-west-1", "path")
    assert s.archive_storage == S3Storage("cold", "berth", "http://127.0.0.1:7480", addressing="path", access_key="K",
                                         secret_key="S3CR3T")
    assert s.lifecycle_preview_retention_seconds == 60
    assert s.log_level == "debug"
    assert s.admin_access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert s.admin_secret_access_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert (s.gc_grace_seconds, s.gc_interval_seconds, s.gc_pin_hold_seconds) == (600, 0, 120)


def test_gc_settings_refuse_negative_seconds() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"BERTH_GC_GRACE_SECONDS": "-1"})


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " on ", "Yes"])
def test_true_booleans(raw: str) -> None:
    assert Settings.from_env({"BERTH_CREATE_ON_PUSH": raw}).create_on_push is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", "", "  "])
def test_false_booleans(raw: str) -> None:
    assert Settings.from_env({"BERTH_CREATE_ON_PUSH": raw}).create_on_push is False


@pytest.mark.parametrize("raw", ["2", "y", "n", "enabled", "truee", "-1", "nope"])
def test_bad_booleans(raw: str) -> None:
    with pytest.raises(ConfigError, match="BERTH_CREATE_ON_PUSH"):
        Settings.from_env({"BERTH_CREATE_ON_PUSH": raw})


@pytest.mark.parametrize("name", ["BERTH_PORT", "BERTH_WORKERS", "BERTH_UPLOAD_MAX_AGE_HOURS"])
@pytest.mark.parametrize("raw", ["", "abc", "1.5", "5000x", "0x10", "1e3"])
def test_bad_integers(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_integers_tolerate_surrounding_spaces() -> None:
    assert Settings.from_env({"BERTH_PORT": " 6000 "}).port == 6000


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("env, message", [
    ({"BERTH_AUTH": "ldap"}, "unknown auth mode"),
    ({"BERTH_AUTH": ""}, "unknown auth mode"),
    ({"BERTH_DATABASE_URL": "mysql://db/berth"}, "unsupported database URL"),
    ({"BERTH_DATABASE_URL": "sqlite://relative.db"}, "unsupported database URL"),
    ({"BERTH_TLS_CERT": "/cert.pem"}, "go together"),
    ({"BERTH_TLS_KEY": "/key.pem"}, "go together"),
    ({"BERTH_WORKERS": "0"}, "at least 1"),
    ({"BERTH_WORKERS": "-3"}, "at least 1"),
    ({"BERTH_JOB_WORKERS": "-1"}, "0 \\(off\\) or more"),
    ({"BERTH_JOB_LEASE_SECONDS": "0"}, "at least 1"),
    ({"BERTH_LIFECYCLE_PREVIEW_RETENTION_SECONDS": "0"}, "at least 1"),
    ({"BERTH_ARCHIVE_STORAGE_URL": "ftp://cold/x"}, "BERTH_ARCHIVE_STORAGE_URL: unknown storage URL scheme"),
    ({"BERTH_ARCHIVE_STORAGE_URL": "file:///srv/blobs", "BERTH_STORAGE_URL": "file:///srv/blobs"}, "main storage"),
])
def test_invalid_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize("url, postgres", [
    ("postgresql://u@h/db", True), ("postgres://u:p@h:5433/db", True), ("sqlite:////var/lib/berth.db", False),
])
def test_database_urls(url: str, postgres: bool) -> None:
    s = Settings.from_env({"BERTH_DATABASE_URL": url})
    assert s.uses_postgres is postgres
    if not postgres:
        assert s.sqlite_path == Path("/var/lib/berth.db")


def test_overrides_win_over_the_environment() -> None:
    env = {"BERTH_PORT": "6000", "BERTH_HOST": "0.0.0.0", "BERTH_CREATE_ON_PUSH": "1"}
    s = Settings.from_env(env, port=7000, host=None, create_on_push=False, data_dir="/tmp/berth-x")
    assert s.port == 7000
    assert s.host == "0.0.0.0"  # None means "flag not given"
    assert s.create_on_push is False
    assert s.data_dir == Path("/tmp/berth-x")


def test_other_variables_are_ignored() -> None:
    env = {"PORT": "1", "HOST": "x", "berth_port": "2", "BERTH_STRICT": "1"}
    assert Settings.from_env(env) == Settings()


def test_a_misspelt_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="BERTH_CREAT_ON_PUSH"):
        Settings.from_env({"BERTH_CREAT_ON_PUSH": "1"})
    with pytest.raises(ConfigError, match="BERTH_PORTS"):
        Settings.from_env({"BERTH_PORTS": "1"})


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_PORT", "5999")
    monkeypatch.setenv("BERTH_CREATE_ON_PUSH", "yes")
    s = Settings.from_env()
    assert (s.port, s.create_on_push) == (5999, True)


def test_to_env_round_trip() -> None:
    s = Settings(host="::1", port=1234, data_dir=Path("/data/berth dir"), database_url="postgres://u:p@h/db",
                 tls_cert="/c.pem", tls_key="/k.pem", workers=3, auth="none", create_on_push=True,
                 default_account="111122223333", default_region="ap-south-1", registry_domain="r.example",
                 upload_max_age_hours=5, log_level="info", admin_access_key_id="AKIDEXAMPLE",
                 admin_secret_access_key="secret/with+chars=")
    env = s.to_env()
    assert all(k.startswith("BERTH_") and isinstance(v, str) for k, v in env.items())
    assert env["BERTH_CREATE_ON_PUSH"] == "1"
    assert env["BERTH_PORT"] == "1234"
    assert env["BERTH_DATA_DIR"] == "/data/berth dir"
    assert Settings.from_env(env) == s
    assert Settings.from_env(Settings().to_env()) == Settings()
    off = replace(s, create_on_push=False)
    assert off.to_env()["BERTH_CREATE_ON_PUSH"] == "0"
    assert Settings.from_env(off.to_env()) == off


def test_to_env_covers_every_field() -> None:
    assert set(Settings().to_env()) == {"BERTH_" + f.name.upper() for f in fields(Settings)}


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_variables_in_the_readme_exist() -> None:
    documented = set(re.findall(r"BERTH_[A-Z_]+[A-Z]", README.read_text()))
    known = {"BERTH_" + f.name.upper() for f in fields(Settings)} | NOT_SETTINGS  # STRICT: the test suite's
    assert documented - known == set()


def test_served_regions_default_to_the_default_region_and_must_be_region_names() -> None:
    assert Settings().served_regions == ("us-east-1",)
    assert Settings(default_region="eu-central-1").served_regions == ("eu-central-1",)
    assert Settings(regions="us-gov-west-1,cn-north-1").served_regions == ("us-east-1", "us-gov-west-1", "cn-north-1")
    for bad in ("*", "US-EAST-1", "us east 1", "us:east-1", "us-east", "eu-west-1,../x"):
        with pytest.raises(ConfigError, match="not an AWS region"):
            Settings(regions=bad)
    with pytest.raises(ConfigError, match="not an AWS region"):
        Settings(default_region="Mars")


@pytest.mark.parametrize("env", [{"BERTH_DB_POOL_MAX_SIZE": "0"},
                                 {"BERTH_DB_POOL_MIN_SIZE": "9", "BERTH_DB_POOL_MAX_SIZE": "8"},
                                 {"BERTH_DB_POOL_MIN_SIZE": "-1"}, {"BERTH_DB_CONNECT_TIMEOUT": "0"}])
def test_pool_settings_are_checked(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="BERTH_DB_"):
        Settings.from_env(env)
