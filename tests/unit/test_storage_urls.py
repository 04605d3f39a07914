"""Storage URLs: what each form selects, and one clear error for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.config import ConfigError, Settings
from berth.storage.urls import FileStorage, S3Storage, StorageUrlError, parse_storage_url

DATA = Path("/srv/berth")


def test_default_is_the_filesystem_under_the_data_dir() -> None:
    assert parse_storage_url("", DATA) == FileStorage(DATA)
    assert Settings(data_dir=DATA).storage == FileStorage(DATA)


def test_file_url() -> None:
    assert parse_storage_url("file:///var/lib/berth%20blobs", DATA) == FileStorage(Path("/var/lib/berth blobs"))
    assert parse_storage_url("file://localhost/x", DATA) == FileStorage(Path("/x"))


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://layers", S3Storage("layers")),
    ("s3://layers/", S3Storage("layers")),
    ("s3://layers/team/berth/", S3Storage("layers", "team/berth")),
    ("s3://layers/p?region=eu-west-1", S3Storage("layers", "p", region="eu-west-1")),
    ("s3://layers/p?endpoint=http://127.0.0.1:7480", S3Storage("layers", "p", "http://127.0.0.1:7480", "", "path")),
    ("s3://layers?endpoint=https://s3.example.com/&addressing=virtual",
     S3Storage("layers", "", "https://s3.example.com", "", "virtual")),
    ("s3://AKID:se%2Fcret@layers/p?profile=ci", S3Storage("layers", "p", access_key="AKID", secret_key="se/cret",
                                                         profile="ci")),
    ("S3://my.bucket-1", S3Storage("my.bucket-1")),
])
def test_s3_urls(url: str, expected: S3Storage) -> None:
    assert parse_storage_url(url, DATA) == expected


@pytest.mark.parametrize("url", [
    "gs://bucket", "azure://c", "http://bucket", "ftp://x", "/var/lib/berth", "bucket", "s3:/bucket",
    "file://host/path", "file:relative", "file:///", "file:///x?y=1",
    "s3://", "s3://ab", "s3://Bucket", "s3://under_score", "s3://bucket:9000", "s3://-bucket", "s3://a..b",
    "s3://bucket/a//b", "s3://bucket/../x", "s3://bucket#frag",
    "s3://bucket?endpoint=", "s3://bucket?endpoint=127.0.0.1:7480", "s3://bucket?endpoint=ftp://h",
    "s3://bucket?endpoint=http://h:99999", "s3://bucket?endpoint=http://h/path", "s3://bucket?region=EU WEST",
    "s3://bucket?addressing=sideways", "s3://bucket?regoin=us-east-1", "s3://bucket?region=a&region=b",
    "s3://bucket?novalue", "s3://KEYONLY@bucket",
])
def test_bad_urls_are_one_clear_error(url: str) -> None:
    with pytest.raises(StorageUrlError) as e:
        parse_storage_url(url, DATA)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        Settings(storage_url=url)


def test_secrets_stay_out_of_errors_and_reprs() -> None:
    with pytest.raises(StorageUrlError) as e:
        parse_storage_url("s3://AKID:topsecret@Bad_Bucket", DATA)
    assert "topsecret" not in str(e.value)
    assert "topsecret" not in repr(parse_storage_url("s3://AKID:topsecret@bucket", DATA))


def test_from_the_environment() -> None:
    s = Settings.from_env({"BERTH_STORAGE_URL": "s3://layers/x", "BERTH_STORAGE_REDIRECT": "yes"})
    assert s.storage == S3Storage("layers", "x") and s.storage_redirect
    with pytest.raises(ConfigError, match="unknown storage URL scheme"):
        Settings.from_env({"BERTH_STORAGE_URL": "swift://container"})
