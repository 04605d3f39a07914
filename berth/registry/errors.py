"""Domain errors. Codes are the registry's vocabulary (the OCI error codes); edges translate them.

Each face has one total table from code to its wire error (berth/api/oci/errors.py,
berth/api/ecr/errors.py); tests/unit/test_error_tables.py fails when a code here has no entry there.
"""

from __future__ import annotations

import errno
import logging
import time

from berth.db.store import MetadataUnavailable
from berth.errors import DomainError
from berth.storage import StorageUnavailable


class RegistryError(DomainError):
    code = "UNKNOWN"  # raised bare: a failure the registry cannot name (the faces answer it as a fault)


# code -> class, every domain error defined (the error-table tests enumerate it)
CODES: dict[str, type[RegistryError]] = {}


def define(code: str) -> type[RegistryError]:
    if code in CODES:
        raise ValueError(f"domain error {code} is defined twice")
    cls = type("".join(p.title() for p in code.split("_")), (RegistryError,), {"code": code})
    CODES[code] = cls
    return cls


BlobUnknown = define("BLOB_UNKNOWN")
BlobUploadInvalid = define("BLOB_UPLOAD_INVALID")
BlobUploadUnknown = define("BLOB_UPLOAD_UNKNOWN")
DigestInvalid = define("DIGEST_INVALID")
ManifestBlobUnknown = define("MANIFEST_BLOB_UNKNOWN")
ManifestInvalid = define("MANIFEST_INVALID")
ManifestUnknown = define("MANIFEST_UNKNOWN")
ManifestTooLarge = define("MANIFEST_TOO_LARGE")
ManifestReferenced = define("MANIFEST_REFERENCED")
BlobReferenced = define("BLOB_REFERENCED")  # DELETE of a blob manifests of the repository use
NameInvalid = define("NAME_INVALID")
NameUnknown = define("NAME_UNKNOWN")
SizeInvalid = define("SIZE_INVALID")
TagInvalid = define("TAG_INVALID")
TagImmutable = define("TAG_IMMUTABLE")
Unsupported = define("UNSUPPORTED")
RangeInvalid = define("RANGE_INVALID")
UploadOutOfOrder = define("UPLOAD_OUT_OF_ORDER")
Denied = define("DENIED")
PaginationNumberInvalid = define("PAGINATION_NUMBER_INVALID")

# the ECR views' refusals (berth/registry/images.py, repositories.py)
ImageIdInvalid = define("IMAGE_ID_INVALID")
ImageAlreadyExists = define("IMAGE_ALREADY_EXISTS")
ImageDigestMismatch = define("IMAGE_DIGEST_MISMATCH")
ReferencedImagesUnknown = define("REFERENCED_IMAGES_UNKNOWN")
LayerAlreadyExists = define("LAYER_ALREADY_EXISTS")
EmptyUpload = define("EMPTY_UPLOAD")
LayerInvalid = define("LAYER_INVALID")
LayerPartInvalid = define("LAYER_PART_INVALID")  # extra["received"]: the bytes the upload holds
LayerInaccessible = define("LAYER_INACCESSIBLE")
RepositoryExists = define("REPOSITORY_ALREADY_EXISTS")
RepositoryNotEmpty = define("REPOSITORY_NOT_EMPTY")
TagParameterInvalid = define("TAG_PARAMETER_INVALID")
TooManyTags = define("TOO_MANY_TAGS")
ParameterInvalid = define("PARAMETER_INVALID")
# a pull-through cache rule cannot get at its upstream at all (its secret, its role): ECR's
# UnableToGetUpstreamImageException (berth/replication/pullthrough.py)
UpstreamImageUnavailable = define("UPSTREAM_IMAGE_UNAVAILABLE")

# failures of what the registry stands on, answered as "try again later"
BlobStoreUnavailable = define("BLOB_STORE_UNAVAILABLE")  # extra["retry_after"]: seconds
DatabaseUnavailable = define("DATABASE_UNAVAILABLE")  # PostgreSQL restarting or failing over; retry_after too
RETRY_AFTER = 5
DATABASE_RETRY_AFTER = 2  # a restart or a failover takes seconds


StorageFull = define("STORAGE_FULL")  # the disk under the data dir or the blobs is full; extra["retry_after"]
FULL_RETRY_AFTER = 60
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"  # disk_full


def from_failure(exc: BaseException) -> RegistryError | None:
    """The domain error for an exception raised below the services (the storage port), or None.

    Edges call this for an exception that is not a RegistryError, before answering it as a fault."""
    if isinstance(exc, StorageUnavailable):
        return BlobStoreUnavailable(f"blob storage unavailable, try again later: {exc}", retry_after=RETRY_AFTER)
    if _disk_full(exc):
        return StorageFull("insufficient storage: the disk holding the registry's data is full; nothing of this "
                           "request was kept. Free space, then retry", retry_after=FULL_RETRY_AFTER)
    if isinstance(exc, MetadataUnavailable):
        return DatabaseUnavailable(f"{exc}; try again shortly", retry_after=DATABASE_RETRY_AFTER)
    return None


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT from a write, SQLite's SQLITE_FULL or PostgreSQL's disk_full, here or in its causes."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or getattr(exc, "sqlstate", None) == _PG_DISK_FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class FailureLog:
    """Logs a failure of what the registry stands on once, loudly (CRITICAL, with its cause), then at most
    once per `quiet` seconds per code: a full disk refuses every push, and must not flood the log."""

    def __init__(self, log: logging.Logger, quiet: float = 300.0) -> None:
        self.log = log
        self.quiet = quiet
        self._last: dict[str, float] = {}

    def note(self, failure: RegistryError, exc: BaseException, where: str) -> None:
        now = time.monotonic()
        last = self._last.get(failure.code)
        if last is None or now - last >= self.quiet:
            self._last[failure.code] = now
            self.log.critical("%s: %s (%s: %s)", where, failure.message, type(exc).__name__, exc)
        else:
            self.log.debug("%s: %s", where, failure.message)
