"""The AWS exception table for the ECR (JSON 1.1) face, in one place.

Clients dispatch on ``__type``; the status still matters to botocore's retry rules (throttling is
retried on 400 + ThrottlingException, 5xx always), so AWS's own statuses are kept: 400 for every
client error, including AccessDeniedException, and 500 for ServerException, the model's only fault.
A test checks this table against the exception shapes of botocore's ECR model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from berth.api.ecr import model
from berth.errors import DomainError
from berth.iam import sigv4

CONTENT_TYPE = "application/x-amz-json-1.1"


def _model_exceptions() -> dict[str, int]:
    """Every exception shape of the installed ECR model: 400, or 500 for its faults (ServerException)."""
    found: dict[str, int] = {}
    for shape in model.service_model().error_shapes:
        name = shape.name
        raw = shape._shape_model  # botocore's Shape.metadata drops "fault"
        status = raw.get("error", {}).get("httpStatusCode")
        found[name] = status or (500 if raw.get("fault") else 400)
    return found


# Read from botocore's model, so a newer model's exceptions are known without editing this file.
MODEL_EXCEPTIONS: dict[str, int] = _model_exceptions()

# Errors every AWS JSON service can answer, outside any service model.
COMMON_EXCEPTIONS: dict[str, int] = {
    "AccessDeniedException": 400,
    "ThrottlingException": 400,
    "UnrecognizedClientException": 400,  # unknown access key id
    "InvalidSignatureException": 400,
    "MissingAuthenticationTokenException": 400,
    "IncompleteSignatureException": 400,
    "SerializationException": 400,
    "UnknownOperationException": 400,
    "ServiceUnavailable": 503,  # the server has not started (lifespan has not run) or is shutting down
    "ExpiredTokenException": 400,  # temporary credentials past their expiry
}

STATUS: dict[str, int] = {**MODEL_EXCEPTIONS, **COMMON_EXCEPTIONS}

# Every domain error code (berth.registry.errors) -> its ECR exception. Total: no default
# (tests/unit/test_error_tables.py enumerates the codes); the operations may word the message.
REGISTRY_ERRORS: dict[str, str] = {
    "NAME_UNKNOWN": "RepositoryNotFoundException",
    "BLOB_STORE_UNAVAILABLE": "ServiceUnavailable",  # 503: botocore retries it
    "DATABASE_UNAVAILABLE": "ServiceUnavailable",
    "NAME_INVALID": "InvalidParameterException",
    "TAG_INVALID": "InvalidParameterException",
    "TAG_IMMUTABLE": "ImageTagAlreadyExistsException",
    "MANIFEST_UNKNOWN": "ImageNotFoundException",
    "MANIFEST_INVALID": "InvalidParameterException",
    "MANIFEST_TOO_LARGE": "InvalidParameterException",
    "MANIFEST_BLOB_UNKNOWN": "LayersNotFoundException",
    "MANIFEST_REFERENCED": "InvalidParameterException",
    "DIGEST_INVALID": "InvalidParameterException",
    "BLOB_UNKNOWN": "LayersNotFoundException",
    "BLOB_UPLOAD_UNKNOWN": "UploadNotFoundException",
    "BLOB_UPLOAD_INVALID": "InvalidLayerException",
    "UPLOAD_OUT_OF_ORDER": "InvalidLayerPartException",
    "SIZE_INVALID": "InvalidLayerPartException",
    "RANGE_INVALID": "InvalidParameterException",
    "UNSUPPORTED": "InvalidParameterException",
    "DENIED": "AccessDeniedException",
    "PAGINATION_NUMBER_INVALID": "InvalidParameterException",
    "UNKNOWN": "ServerException",  # a bare RegistryError: a fault, not the caller's
    # the ECR views' own refusals (berth/registry/images.py, repositories.py)
    "IMAGE_ID_INVALID": "InvalidParameterException",
    "IMAGE_ALREADY_EXISTS": "ImageAlreadyExistsException",
    "IMAGE_DIGEST_MISMATCH": "ImageDigestDoesNotMatchException",
    "REFERENCED_IMAGES_UNKNOWN": "ReferencedImagesNotFoundException",
    "EMPTY_UPLOAD": "EmptyUploadException",
    "LAYER_INVALID": "InvalidLayerException",
    "LAYER_PART_INVALID": "InvalidLayerPartException",
    "LAYER_ALREADY_EXISTS": "LayerAlreadyExistsException",
    "LAYER_INACCESSIBLE": "LayerInaccessibleException",
    "REPOSITORY_ALREADY_EXISTS": "RepositoryAlreadyExistsException",
    "REPOSITORY_NOT_EMPTY": "RepositoryNotEmptyException",
    "TAG_PARAMETER_INVALID": "InvalidTagParameterException",
    "TOO_MANY_TAGS": "TooManyTagsException",
    "PARAMETER_INVALID": "InvalidParameterException",
    "BLOB_REFERENCED": "InvalidParameterException",  # the OCI face's blob DELETE only
    "STORAGE_FULL": "ServerException",  # the model's fault (500; botocore retries it), the message says why
    "UPSTREAM_IMAGE_UNAVAILABLE": "UnableToGetUpstreamImageException",
}

# Every identity error code (berth.iam.errors) -> its ECR exception, for those an ECR operation meets.
IAM_ERRORS: dict[str, str] = {
    "ServiceFailure": "ServerException",  # a bare IamError
    "NoSuchEntity": "InvalidParameterException",
    "EntityAlreadyExists": "InvalidParameterException",
    "DeleteConflict": "InvalidParameterException",
    "MalformedPolicyDocument": "InvalidParameterException",
    "LimitExceeded": "LimitExceededException",
    "InvalidInput": "InvalidParameterException",
    # STS's refusals (berth/iam/sessions.py, oidc.py); the ECR face meets them only through shared code
    "AccessDenied": "AccessDeniedException",
    "ValidationError": "InvalidParameterException",
    "InvalidIdentityToken": "InvalidParameterException",
    "ExpiredTokenException": "ExpiredTokenException",
    "IDPCommunicationError": "ServerException",
    "PolicyNotAttachable": "InvalidParameterException",  # a service-role policy (berth/iam/managed.py)
}


class EcrError(Exception):
    """An AWS exception raised by a handler: `name` is its __type, `extra` its modelled members."""

    def __init__(self, name: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.extra = extra


def translated(e: DomainError, message: str | None = None, *, table: Mapping[str, str] = REGISTRY_ERRORS,
               **extra: Any) -> EcrError:
    """The domain error as its one ECR exception (REGISTRY_ERRORS, or its capability's table: lifecycle's,
    scanning's), in the operation's own words if given."""
    return EcrError(table[e.code], e.message if message is None else message, **extra)

# How a SigV4 failure is named on the JSON face (an expired signature is InvalidSignatureException there).
SIGV4_ERRORS: dict[type[sigv4.SigV4Error], str] = {
    sigv4.MissingAuthentication: "MissingAuthenticationTokenException",
    sigv4.IncompleteSignature: "IncompleteSignatureException",
    sigv4.SignatureDoesNotMatch: "InvalidSignatureException",
    sigv4.RequestExpired: "InvalidSignatureException",
    sigv4.ExpiredToken: "ExpiredTokenException",
}


def error_body(
    name: str, message: str, *, request_id: str | None = None, **extra: Any
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for the exception ``name``; ``extra`` are its modelled members."""
    status = STATUS.get(name)
    if status is None:
        raise ValueError(f"{name!r} is not in the AWS exception table")
    if extra and name in MODEL_EXCEPTIONS:
        allowed = set(model.service_model().shape_for(name).members)
        unknown = set(extra) - allowed
        if unknown:
            raise ValueError(f"{name} has no members {sorted(unknown)}")
    body = json.dumps({"__type": name, "message": message, **extra}, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": CONTENT_TYPE,
        "x-amzn-RequestId": request_id or str(uuid.uuid4()),
    }
    return status, headers, body


def from_exception(exc: Exception, *, request_id: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """The response for the edge-level failures raised by sigv4 and model."""
    if isinstance(exc, sigv4.SigV4Error):
        return error_body(SIGV4_ERRORS[type(exc)], exc.message, request_id=request_id)
    if isinstance(exc, model.RequestError):
        return error_body(exc.code, exc.message, request_id=request_id)
    raise TypeError(f"no AWS error for {type(exc).__name__}")


def fault(request_id: str) -> tuple[int, dict[str, str], bytes]:
    """An unexpected failure: ServerException, the fault the ECR model declares (500, so botocore retries
    it and boto3 raises ecr.exceptions.ServerException), naming the request id the log line carries."""
    return error_body("ServerException", f"internal error; request id {request_id}", request_id=request_id)
