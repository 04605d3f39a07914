"""The OCI error table: domain error code -> (HTTP status, wire code). One place."""

from __future__ import annotations

import json
from typing import Any

# domain code: (status, wire code)
TABLE: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "BLOB_UNKNOWN"),
    "BLOB_UPLOAD_INVALID": (400, "BLOB_UPLOAD_INVALID"),
    "BLOB_UPLOAD_UNKNOWN": (404, "BLOB_UPLOAD_UNKNOWN"),
    "DIGEST_INVALID": (400, "DIGEST_INVALID"),
    "MANIFEST_BLOB_UNKNOWN": (400, "MANIFEST_BLOB_UNKNOWN"),
    "MANIFEST_INVALID": (400, "MANIFEST_INVALID"),
    "MANIFEST_UNKNOWN": (404, "MANIFEST_UNKNOWN"),
    "MANIFEST_TOO_LARGE": (413, "MANIFEST_INVALID"),
    "MANIFEST_REFERENCED": (409, "DENIED"),
    "NAME_INVALID": (400, "NAME_INVALID"),
    "NAME_UNKNOWN": (404, "NAME_UNKNOWN"),
    "SIZE_INVALID": (400, "SIZE_INVALID"),
    "TAG_INVALID": (400, "TAG_INVALID"),
    "TAG_IMMUTABLE": (400, "TAG_INVALID"),  # what ECR answers for a push that would move an immutable tag
    "UNSUPPORTED": (400, "UNSUPPORTED"),
    "RANGE_INVALID": (416, "SIZE_INVALID"),
    "UPLOAD_OUT_OF_ORDER": (416, "BLOB_UPLOAD_INVALID"),
    "DENIED": (403, "DENIED"),
    "UNAUTHORIZED": (401, "UNAUTHORIZED"),
    "TOOMANYREQUESTS": (429, "TOOMANYREQUESTS"),
    "PAGINATION_NUMBER_INVALID": (400, "PAGINATION_NUMBER_INVALID"),
    "NOT_FOUND": (404, "UNSUPPORTED"),
    "METHOD_NOT_ALLOWED": (405, "UNSUPPORTED"),
}


def error_body(code: str, message: str, detail: Any = None) -> tuple[int, bytes]:
    status, wire = TABLE.get(code, (400, code))
    err: dict[str, Any] = {"code": wire, "message": message}
    if detail is not None:
        err["detail"] = detail
    return status, json.dumps({"errors": [err]}).encode()
