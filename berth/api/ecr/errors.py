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
    "ExpiredTokenException": 400,  # temporary credentials past their expiry
}

STATUS: dict[str, int] = {**MODEL_EXCEPTIONS, **COMMON_EXCEPTIONS}

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
