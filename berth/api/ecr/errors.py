"""The AWS exception table for the ECR (JSON 1.1) face, in one place.

Clients dispatch on ``__type``; the status still matters to botocore's retry rules (throttling is
retried on 400 + ThrottlingException, 5xx always), so AWS's own statuses are kept: 400 for every
client error, including AccessDeniedException, and 500 for ServerException, the model's only fault.
A test checks this table against the exception shapes of botocore's ECR model.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from berth.api.ecr import model
from berth.iam import sigv4

CONTENT_TYPE = "application/x-amz-json-1.1"

# Exception shapes of the ECR model (botocore 1.43).
MODEL_EXCEPTIONS: dict[str, int] = {
    "BlockedByOrganizationPolicyException": 400,
    "EmptyUploadException": 400,
    "ExclusionAlreadyExistsException": 400,
    "ExclusionNotFoundException": 400,
    "ImageAlreadyExistsException": 400,
    "ImageArchivedException": 400,
    "ImageDigestDoesNotMatchException": 400,
    "ImageNotFoundException": 400,
    "ImageStorageClassUpdateNotSupportedException": 400,
    "ImageTagAlreadyExistsException": 400,
    "InvalidLayerException": 400,
    "InvalidLayerPartException": 400,
    "InvalidParameterException": 400,
    "InvalidTagParameterException": 400,
    "KmsException": 400,
    "LayerAlreadyExistsException": 400,
    "LayerInaccessibleException": 400,
    "LayerPartTooSmallException": 400,
    "LayersNotFoundException": 400,
    "LifecyclePolicyNotFoundException": 400,
    "LifecyclePolicyPreviewInProgressException": 400,
    "LifecyclePolicyPreviewNotFoundException": 400,
    "LimitExceededException": 400,
    "PullThroughCacheRuleAlreadyExistsException": 400,
    "PullThroughCacheRuleNotFoundException": 400,
    "ReferencedImagesNotFoundException": 400,
    "RegistryPolicyNotFoundException": 400,
    "RepositoryAlreadyExistsException": 400,
    "RepositoryNotEmptyException": 400,
    "RepositoryNotFoundException": 400,
    "RepositoryPolicyNotFoundException": 400,
    "ScanNotFoundException": 400,
    "SecretNotFoundException": 400,
    "ServerException": 500,
    "SigningConfigurationNotFoundException": 400,
    "TemplateAlreadyExistsException": 400,
    "TemplateNotFoundException": 400,
    "TooManyTagsException": 400,
    "UnableToAccessSecretException": 400,
    "UnableToDecryptSecretValueException": 400,
    "UnableToGetUpstreamImageException": 400,
    "UnableToGetUpstreamLayerException": 400,
    "UnableToListUpstreamImageReferrersException": 400,
    "UnsupportedImageTypeException": 400,
    "UnsupportedUpstreamRegistryException": 400,
    "UploadNotFoundException": 400,
    "ValidationException": 400,
}

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
}

STATUS: dict[str, int] = {**MODEL_EXCEPTIONS, **COMMON_EXCEPTIONS}

# How a SigV4 failure is named on the JSON face (an expired signature is InvalidSignatureException there).
SIGV4_ERRORS: dict[type[sigv4.SigV4Error], str] = {
    sigv4.MissingAuthentication: "MissingAuthenticationTokenException",
    sigv4.IncompleteSignature: "IncompleteSignatureException",
    sigv4.SignatureDoesNotMatch: "InvalidSignatureException",
    sigv4.RequestExpired: "InvalidSignatureException",
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
