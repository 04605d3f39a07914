"""The OCI error table: every domain error code -> (HTTP status, wire code). One place, no default.

DOMAIN covers every code of berth.registry.errors (tests/unit/test_error_tables.py enumerates them);
EDGE holds the refusals of this face itself (routing, authentication, start-up). A code in neither
raises KeyError, which the edge answers as a fault (UNKNOWN, 500), never as a guessed 400.
"""

from __future__ import annotations

import json
from typing import Any

DOMAIN: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "BLOB_UNKNOWN"),
    "BLOB_UPLOAD_INVALID": (400, "BLOB_UPLOAD_INVALID"),
    "BLOB_UPLOAD_UNKNOWN": (404, "BLOB_UPLOAD_UNKNOWN"),
    "DIGEST_INVALID": (400, "DIGEST_INVALID"),
    "MANIFEST_BLOB_UNKNOWN": (400, "MANIFEST_BLOB_UNKNOWN"),
    "MANIFEST_INVALID": (400, "MANIFEST_INVALID"),
    "MANIFEST_UNKNOWN": (404, "MANIFEST_UNKNOWN"),
    "MANIFEST_TOO_LARGE": (413, "MANIFEST_INVALID"),
    "MANIFEST_REFERENCED": (409, "DENIED"),
    # distribution answers a blob delete it will not do with 405 UNSUPPORTED; the spec allows 400 or 405
    "BLOB_REFERENCED": (405, "UNSUPPORTED"),
    "NAME_INVALID": (400, "NAME_INVALID"),
    "NAME_UNKNOWN": (404, "NAME_UNKNOWN"),
    "SIZE_INVALID": (400, "SIZE_INVALID"),
    "TAG_INVALID": (400, "TAG_INVALID"),
    "TAG_IMMUTABLE": (400, "TAG_INVALID"),  # what ECR answers for a push that would move an immutable tag
    "UNSUPPORTED": (400, "UNSUPPORTED"),
    "RANGE_INVALID": (416, "SIZE_INVALID"),
    "UPLOAD_OUT_OF_ORDER": (416, "BLOB_UPLOAD_INVALID"),
    "DENIED": (403, "DENIED"),
    "PAGINATION_NUMBER_INVALID": (400, "PAGINATION_NUMBER_INVALID"),
    "UNKNOWN": (500, "UNKNOWN"),  # a bare RegistryError: the registry could not name the failure
    "BLOB_STORE_UNAVAILABLE": (503, "UNKNOWN"),  # with Retry-After; the spec has no code for "try later"
    "STORAGE_FULL": (507, "UNKNOWN"),  # Insufficient Storage, with Retry-After and a message that says so
    "DATABASE_UNAVAILABLE": (503, "UNAVAILABLE"),  # with Retry-After: distribution's code for "try later"
    # The ECR views' refusals: raised by the ECR operations only today, mapped here by meaning so that
    # a service shared by both faces can raise them without an OCI client ever meeting a guessed code.
    "IMAGE_ID_INVALID": (400, "MANIFEST_INVALID"),
    "IMAGE_ALREADY_EXISTS": (409, "DENIED"),
    "IMAGE_DIGEST_MISMATCH": (400, "DIGEST_INVALID"),
    "REFERENCED_IMAGES_UNKNOWN": (404, "MANIFEST_UNKNOWN"),
    "LAYER_ALREADY_EXISTS": (409, "DENIED"),
    "EMPTY_UPLOAD": (400, "BLOB_UPLOAD_INVALID"),
    "LAYER_INVALID": (400, "DIGEST_INVALID"),
    "LAYER_PART_INVALID": (416, "BLOB_UPLOAD_INVALID"),
    "LAYER_INACCESSIBLE": (404, "BLOB_UNKNOWN"),
    "REPOSITORY_ALREADY_EXISTS": (409, "DENIED"),
    "REPOSITORY_NOT_EMPTY": (409, "DENIED"),
    "TAG_PARAMETER_INVALID": (400, "UNSUPPORTED"),
    "TOO_MANY_TAGS": (400, "UNSUPPORTED"),
    "PARAMETER_INVALID": (400, "UNSUPPORTED"),
    "UPSTREAM_IMAGE_UNAVAILABLE": (404, "MANIFEST_UNKNOWN"),  # a pull-through upstream out of reach, as a miss
}

# This face's own refusals, not domain errors.
EDGE: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "UNAUTHORIZED"),
    "NOT_FOUND": (404, "UNSUPPORTED"),  # no such route
    "METHOD_NOT_ALLOWED": (405, "UNSUPPORTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),  # not started (lifespan has not run) or shutting down
    "TOOMANYREQUESTS": (429, "TOOMANYREQUESTS"),
    # a registry host naming a region this deployment does not serve: refused as the control plane
    # refuses a request signed for one (403), in this face's format
    "REGION_UNKNOWN": (403, "DENIED"),
}

TABLE: dict[str, tuple[int, str]] = {**DOMAIN, **EDGE}


class EdgeError(Exception):
    """A refusal of the OCI face itself (a code of EDGE)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        if code not in EDGE:
            raise ValueError(f"{code} is not an OCI edge error")
        self.code = code
        self.message = message
        self.detail: Any = None
        self.extra: dict[str, Any] = {}


def error_body(code: str, message: str, detail: Any = None) -> tuple[int, bytes]:
    status, wire = TABLE[code]
    err: dict[str, Any] = {"code": wire, "message": message}
    if detail is not None:
        err["detail"] = detail
    return status, json.dumps({"errors": [err]}).encode()


def fault_body(request_id: str) -> tuple[int, bytes]:
    """An unexpected failure: UNKNOWN, with the request id that the log line carries too."""
    return error_body("UNKNOWN", f"internal error; request id {request_id}", {"requestId": request_id})
