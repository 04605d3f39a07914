"""POST / with X-Amz-Target: secretsmanager.<Op>: CreateSecret, GetSecretValue, PutSecretValue,
DescribeSecret, ListSecrets, DeleteSecret. SigV4 with the service `secretsmanager`; validated against
botocore's own secretsmanager model; authorized as `secretsmanager:<Op>` on the secret's ARN."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.loaders import create_loader
from botocore.model import ServiceModel

from berth.api.auth import Authenticator, UnknownAccessKey
from berth.api.ecr.model import Problem, RequestError, SerializationError, _check, decode_body
from berth.iam import sigv4
from berth.iam.authz import Authorizer, Context, Principal
from berth.secrets.service import Secret, Secrets, SecretsError

log = logging.getLogger("berth.secretsmanager")
CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "secretsmanager."
PAGE = 100

_SIGV4 = {sigv4.MissingAuthentication: "MissingAuthenticationTokenException",
          sigv4.IncompleteSignature: "IncompleteSignatureException",
          sigv4.SignatureDoesNotMatch: "InvalidSignatureException",
          sigv4.RequestExpired: "InvalidSignatureException", sigv4.ExpiredToken: "ExpiredTokenException"}


@functools.cache
def service_model() -> ServiceModel:
    return ServiceModel(create_loader().load_service_model("secretsmanager", "service-2"), "secretsmanager")


def _error(name: str, message: str, request_id: str, status: int = 400) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": name, "Message": message}).encode()
    return status, {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}, body


class Refused(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _metadata(s: Secret) -> dict[str, Any]:
    out: dict[str, Any] = {"ARN": s.arn, "Name": s.name, "LastChangedDate": s.updated_at, "CreatedDate": s.created_at,
                           "VersionIdsToStages": {s.version_id: ["AWSCURRENT"]}}
    if s.description:
        out["Description"] = s.description
    if s.kms_key_id:
        out["KmsKeyId"] = s.kms_key_id
    if s.tags:
        out["Tags"] = s.tags
    if s.deleted_at is not None:
        out["DeletedDate"] = s.deleted_at
    return out


class SecretsApi:
    def __init__(self, secrets: Secrets, authenticator: Authenticator, authorizer: Authorizer,
                 default_region: str) -> None:
        self.secrets = secrets
        self.authn = authenticator
        self.authz = authorizer
        self.default_region = default_region
        self.ops: dict[str, Callable[[Principal, str, dict[str, Any], Context], Awaitable[dict[str, Any]]]] = {
            "CreateSecret": self.create_secret, "GetSecretValue": self.get_secret_value,
            "PutSecretValue": self.put_secret_value, "DescribeSecret": self.describe_secret,
            "ListSecrets": self.list_secrets, "DeleteSecret": self.delete_secret}

    async def handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes, target: str,
                     client_ip: str, secure: bool, host: str) -> tuple[int, dict[str, str], bytes]:
        request_id = str(uuid.uuid4())
        op = target[len(TARGET_PREFIX):]
        try:
            if op not in service_model().operation_names:
                raise Refused("UnknownOperationException", f"Unknown operation {target}")
            try:
                principal, signed = await self.authn.aws_principal(method, raw_path, query, headers, body,
                                                                    service="secretsmanager")
            except UnknownAccessKey as e:
                raise Refused("UnrecognizedClientException", e.message) from None
            handler = self.ops.get(op)
            if handler is None:
                raise Refused("InvalidRequestException", f"Berth does not support the Secrets Manager operation {op}")
            params = decode_body(body)
            shape = service_model().operation_model(op).input_shape
            problems: list[Problem] = []
            if shape is not None:
                _check(shape, params, "", problems)
            if problems:
                raise Refused("InvalidParameterException",
                              "; ".join(p.validation_text() for p in problems))
            region = signed.region if signed is not None else self.default_region
            result = await handler(principal, region, params, Context(client_ip, secure))
            out = json.dumps(result, separators=(",", ":")).encode()
            return 200, {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}, out
        except sigv4.SigV4Error as e:
            return _error(_SIGV4.get(type(e), "InvalidSignatureException"), e.message, request_id)
        except RequestError as e:
            return _error(e.code or "SerializationException", e.message, request_id)
        except Refused as e:
            return _error(e.name, e.message, request_id)
        except SecretsError as e:
            return _error(e.kind, e.message, request_id)
        except Exception:
            log.exception("Secrets Manager %s failed; request id %s", target, request_id)
            return _error("InternalServiceError", f"internal error; request id {request_id}", request_id, 500)

    async def _allow(self, principal: Principal, op: str, resource: str, context: Context) -> None:
        decision = await self.authz.authorize(principal, f"secretsmanager:{op}", resource, context)
        if not decision.allowed:
            raise Refused("AccessDeniedException", f"User: {principal.arn} is not authorized to perform: "
                                                   f"secretsmanager:{op} on resource: {resource} because "
                                                   f"{decision.reason}")

    async def _allowed_secret(self, principal: Principal, region: str, op: str, secret_id: str,
                              context: Context) -> Secret:
        s = await self.secrets.describe(principal.account, region, secret_id)
        await self._allow(principal, op, s.arn, context)
        return s

    @staticmethod
    def _binary(params: dict[str, Any]) -> bytes | None:
        raw = params.get("SecretBinary")
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationError("SecretBinary is not valid base64") from None

    async def create_secret(self, principal: Principal, region: str, p: dict[str, Any],
                            context: Context) -> dict[str, Any]:
        name = p["Name"]
        await self._allow(principal, "CreateSecret",
                          f"arn:aws:secretsmanager:{region}:{principal.account}:secret:{name}", context)
        value, binary = p.get("SecretString"), self._binary(p)
        s = await self.secrets.create(principal.account, region, name, p.get("Description") or "",
                                      p.get("KmsKeyId"), value, binary, p.get("Tags"))
        out: dict[str, Any] = {"ARN": s.arn, "Name": s.name}
        if value is not None or binary is not None:
            out["VersionId"] = s.version_id
        return out

    async def get_secret_value(self, principal: Principal, region: str, p: dict[str, Any],
                               context: Context) -> dict[str, Any]:
        await self._allowed_secret(principal, region, "GetSecretValue", p["SecretId"], context)
        v = await self.secrets.get_value(principal.account, region, p["SecretId"])
        if p.get("VersionId") not in (None, v.secret.version_id) or p.get("VersionStage") not in (None, "AWSCURRENT"):
            raise SecretsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret value "
                                                            "for that version")
        out: dict[str, Any] = {"ARN": v.secret.arn, "Name": v.secret.name, "VersionId": v.secret.version_id,
                               "VersionStages": ["AWSCURRENT"], "CreatedDate": v.secret.updated_at}
        if v.string is not None:
            out["SecretString"] = v.string
        if v.binary is not None:
            out["SecretBinary"] = base64.b64encode(v.binary).decode()
        return out

    async def put_secret_value(self, principal: Principal, region: str, p: dict[str, Any],
                               context: Context) -> dict[str, Any]:
        await self._allowed_secret(principal, region, "PutSecretValue", p["SecretId"], context)
        s = await self.secrets.put_value(principal.account, region, p["SecretId"], p.get("SecretString"),
                                         self._binary(p))
        return {"ARN": s.arn, "Name": s.name, "VersionId": s.version_id, "VersionStages": ["AWSCURRENT"]}

    async def describe_secret(self, principal: Principal, region: str, p: dict[str, Any],
                              context: Context) -> dict[str, Any]:
        s = await self._allowed_secret(principal, region, "DescribeSecret", p["SecretId"], context)
        return _metadata(s)

    async def list_secrets(self, principal: Principal, region: str, p: dict[str, Any],
                           context: Context) -> dict[str, Any]:
        await self._allow(principal, "ListSecrets", "*", context)
        limit = p.get("MaxResults") or PAGE
        after = ""
        if p.get("NextToken"):
            try:
                after = base64.urlsafe_b64decode(p["NextToken"] + "==").decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise Refused("InvalidNextTokenException", "The NextToken value is invalid.") from None
        found = await self.secrets.list(principal.account, region, after, limit + 1,
                                        bool(p.get("IncludePlannedDeletion")))
        out: dict[str, Any] = {"SecretList": [_metadata(s) for s in found[:limit]]}
        if len(found) > limit:
            out["NextToken"] = base64.urlsafe_b64encode(found[limit - 1].name.encode()).decode().rstrip("=")
        return out

    async def delete_secret(self, principal: Principal, region: str, p: dict[str, Any],
                            context: Context) -> dict[str, Any]:
        await self._allowed_secret(principal, region, "DeleteSecret", p["SecretId"], context)
        s, when = await self.secrets.delete(principal.account, region, p["SecretId"], p.get("RecoveryWindowInDays"),
                                            bool(p.get("ForceDeleteWithoutRecovery")))
        return {"ARN": s.arn, "Name": s.name, "DeletionDate": when}
