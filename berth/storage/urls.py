"""Storage URLs: which BlobStore to build, parsed and checked at start-up.

    file:///var/lib/berth            the filesystem driver under that directory
    (empty)                          the filesystem driver under the data directory (the default)
    s3://bucket/prefix?endpoint=http://host:port&region=eu-west-1&addressing=path|virtual
    s3://KEY:SECRET@bucket/prefix    credentials in the URL (percent-encode them); otherwise the
                                     usual AWS sources: environment, shared files (profile=NAME), roles

Any other scheme, a query parameter not listed here, or a malformed value is a ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules, in short
_REGION = re.compile(r"[a-z0-9-]{2,32}")
_S3_PARAMS = ("endpoint", "region", "addressing", "profile")


class StorageUrlError(ValueError):
    pass


@dataclass(frozen=True)
class FileStorage:
    root: Path


@dataclass(frozen=True)
class S3Storage:
    bucket: str
    prefix: str = ""
    endpoint: str = ""  # empty: AWS S3 for the region
    region: str = ""  # empty: from the AWS configuration, else us-east-1
    addressing: str = "auto"  # path | virtual | auto (botocore's choice)
    access_key: str = ""  # empty: the usual AWS credential sources
    secret_key: str = ""
    profile: str = ""

    def __repr__(self) -> str:  # never print the secret
        return (f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r}, "
                f"region={self.region!r}, addressing={self.addressing!r})")


def parse_storage_url(url: str, data_dir: Path) -> FileStorage | S3Storage:
    url = url.strip()
    if not url:
        return FileStorage(Path(data_dir))
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StorageUrlError(f"storage URL {_redact(url)!r} is not a URL (file:///path or s3://bucket/prefix)")
    scheme = scheme.lower()
    if scheme == "file":
        return _file(url)
    if scheme == "s3":
        return _s3(url)
    raise StorageUrlError(f"unknown storage URL scheme {scheme!r} (file:// or s3://)")


def _file(url: str) -> FileStorage:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise StorageUrlError(f"file storage URL {url!r}: expected file:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise StorageUrlError(f"file storage URL {url!r}: expected file:///absolute/path")
    return FileStorage(Path(path))


def _s3(url: str) -> S3Storage:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as e:
        raise StorageUrlError(f"malformed S3 storage URL {_redact(url)!r}: {e}") from None
    if port is not None:
        raise StorageUrlError("S3 storage URL: the host part is the bucket (put the endpoint in ?endpoint=)")
    bucket = parts.netloc.rpartition("@")[2]  # as written: hostname would lower-case it
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise StorageUrlError(f"S3 storage URL {_redact(url)!r}: {bucket!r} is not a valid bucket name")
    if parts.fragment:
        raise StorageUrlError("S3 storage URL: a fragment (#…) means nothing here")
    prefix = unquote(parts.path).strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise StorageUrlError(f"S3 storage URL: prefix {prefix!r} has an empty, '.' or '..' segment")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise StorageUrlError(f"S3 storage URL: malformed query: {e}") from None
    unknown = sorted(set(query) - set(_S3_PARAMS))
    if unknown:
        raise StorageUrlError(f"S3 storage URL: unknown parameter(s) {', '.join(unknown)} "
                              f"(known: {', '.join(_S3_PARAMS)})")
    params = {}
    for k, v in query.items():
        if len(v) != 1 or not v[0]:
            raise StorageUrlError(f"S3 storage URL: {k}= must be given once, with a value")
        params[k] = v[0]
    endpoint = params.get("endpoint", "")
    if endpoint:
        ep = urlsplit(endpoint)
        try:
            ep.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise StorageUrlError(f"S3 storage URL: endpoint {endpoint!r} has a bad port") from None
        if ep.scheme not in ("http", "https") or not ep.hostname or ep.path not in ("", "/") or ep.query:
            raise StorageUrlError(f"S3 storage URL: endpoint {endpoint!r} must be http(s)://host[:port]")
    region = params.get("region", "")
    if region and not _REGION.fullmatch(region):
        raise StorageUrlError(f"S3 storage URL: region {region!r} is not a region name")
    addressing = params.get("addressing", "path" if endpoint else "auto")
    if addressing not in ("path", "virtual", "auto"):
        raise StorageUrlError(f"S3 storage URL: addressing={addressing!r} (path|virtual|auto)")
    key, secret = unquote(parts.username or ""), unquote(parts.password or "")
    if bool(key) != bool(secret):
        raise StorageUrlError("S3 storage URL: give both KEY:SECRET@ or neither")
    return S3Storage(bucket, prefix, endpoint.rstrip("/"), region, addressing, key, secret, params.get("profile", ""))


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)
