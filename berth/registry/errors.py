"""Domain errors. Codes are the registry's vocabulary (the OCI error codes); edges translate them."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str, detail: Any = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.extra = extra


def _error(code: str) -> type[RegistryError]:
    return type("".join(p.title() for p in code.split("_")), (RegistryError,), {"code": code})


BlobUnknown = _error("BLOB_UNKNOWN")
BlobUploadInvalid = _error("BLOB_UPLOAD_INVALID")
BlobUploadUnknown = _error("BLOB_UPLOAD_UNKNOWN")
DigestInvalid = _error("DIGEST_INVALID")
ManifestBlobUnknown = _error("MANIFEST_BLOB_UNKNOWN")
ManifestInvalid = _error("MANIFEST_INVALID")
ManifestUnknown = _error("MANIFEST_UNKNOWN")
ManifestTooLarge = _error("MANIFEST_TOO_LARGE")
ManifestReferenced = _error("MANIFEST_REFERENCED")
NameInvalid = _error("NAME_INVALID")
NameUnknown = _error("NAME_UNKNOWN")
SizeInvalid = _error("SIZE_INVALID")
TagInvalid = _error("TAG_INVALID")
TagImmutable = _error("TAG_IMMUTABLE")
Unsupported = _error("UNSUPPORTED")
RangeInvalid = _error("RANGE_INVALID")
UploadOutOfOrder = _error("UPLOAD_OUT_OF_ORDER")
Denied = _error("DENIED")
