"""POST / with ``Action=…&Version=…``: the IAM and STS faces (AWS query protocol, XML responses).

Read the form, pick the service (the SigV4 scope's service, else the Version), authenticate,
validate against botocore's model, authorize ``iam:<Action>`` on the user's ARN through the one
seam (sts:GetCallerIdentity needs no permission, as in AWS), call the identity service, and
answer in IAM's XML; identity errors keep their IAM codes and statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from berth.api.auth import Authenticator, UnknownAccessKey
from berth.api.iam import model, xml
from berth.api.limits import Limits, message, retry_after
from berth.audit import SOURCES, AuditNote, AuditTrail, user_agent, xml_error
from berth.iam import sigv4
from berth.iam.authz import Authorizer, Context, Principal, principal_arn, role_arn
from berth.iam.entities import check_tags
from berth.iam.errors import IamError, NoSuchEntity
from berth.iam.model import AccessKey, User
from berth.iam.service import IdentityService
from berth.registry.errors import FailureLog, from_failure

log = logging.getLogger("berth.iam")
CONTENT_TYPE = "text/xml"

# The wire errors of this face besides the identity service's own (IamError carries code and status).
STATUS: dict[str, int] = {
    "AccessDenied": 403,
    "InvalidClientTokenId": 403,  # unknown or inactive access key
    "ExpiredToken": 403,  # temporary credentials past their expiry
    "SignatureDoesNotMatch": 403,  # also an expired signature, as IAM and STS answer it
    "MissingAuthenticationToken": 403,
    "IncompleteSignature": 400,
    "InvalidAction": 400,
    "MissingAction": 400,
    "ValidationError": 400,
    "MalformedQueryString": 400,
    "ServiceFailure": 500,
    "Throttling": 400,  # a rate limit (berth/api/limits.py), with Retry-After
}

SIGV4_ERRORS: dict[type[sigv4.SigV4Error], str] = {
    UnknownAccessKey: "InvalidClientTokenId",
    sigv4.MissingAuthentication: "MissingAuthenticationToken",
    sigv4.IncompleteSignature: "IncompleteSignature",
    sigv4.SignatureDoesNotMatch: "SignatureDoesNotMatch",
    sigv4.RequestExpired: "SignatureDoesNotMatch",
    sigv4.ExpiredToken: "ExpiredToken",
}

UNSIGNED = frozenset({("sts", "AssumeRoleWithWebIdentity"), ("sts", "AssumeRoleWithSAML")})
_NON_USER = "Must specify userName when calling with non-User credentials"


@dataclass
class IamCall:
    service: str
    op: str
    params: dict[str, Any]
    principal: Principal
    context: Context
    identity: IdentityService
    authorizer: Authorizer

    @property
    def account(self) -> str:
        return self.principal.account

    def user_arn(self, name: str, path: str = "/") -> str:
        return principal_arn(self.account, name, path)

    def target_user(self) -> str:
        """The UserName parameter, or the calling user when the operation allows leaving it out."""
        name = self.params.get("UserName")
        if name is not None:
            return str(name)
        if self.principal.user is None:
            raise model.QueryError("ValidationError", _NON_USER)
        return self.principal.user

    async def resource(self) -> str:
        """The ARN IAM authorizes the operation on."""
        p, a = self.params, self.account
        listing = {"ListUsers": "user", "ListGroups": "group", "ListRoles": "role"}.get(self.op)
        if listing:
            return f"arn:aws:iam::{a}:{listing}{p.get('PathPrefix', '/')}"
        if self.op == "ListPolicies":
            return f"arn:aws:iam::{a}:policy/"
        if self.op == "CreateUser":
            return self.user_arn(p["UserName"], p.get("Path", "/"))
        if self.op == "CreateGroup":
            return f"arn:aws:iam::{a}:group{p.get('Path', '/')}{p['GroupName']}"
        if self.op == "CreateRole":
            return role_arn(a, p["RoleName"], p.get("Path", "/"))
        if self.op == "CreatePolicy":
            return f"arn:aws:iam::{a}:policy{p.get('Path', '/')}{p['PolicyName']}"
        if "GroupName" in p:
            group = await self.identity.entities.find_group(a, p["GroupName"])
            return f"arn:aws:iam::{a}:group{group.path if group else '/'}{p['GroupName']}"
        if "RoleName" in p:
            role = await self.identity.entities.find_role(a, p["RoleName"])
            return role_arn(a, p["RoleName"], role.path if role else "/")
        if "RoleArn" in p:
            return str(p["RoleArn"])
        if "PolicyArn" in p and "UserName" not in p:
            return str(p["PolicyArn"])
        name = self.target_user()
        try:
            path = (await self.identity.get_user(self.account, name)).path
        except NoSuchEntity:
            path = "/"
        return self.user_arn(name, path)


Handler = Callable[[IamCall], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    params: frozenset[str]  # the input members Berth implements; any other is refused
    authorize: bool = True


def _user(call: IamCall, row: User) -> dict[str, Any]:
    return {"Path": row.path, "UserName": row.name, "UserId": row.user_id,
            "Arn": call.user_arn(row.name, row.path), "CreateDate": row.created_at}


def _page(call: IamCall, items: list[Any], key: Callable[[Any], str]) -> tuple[list[Any], dict[str, Any]]:
    """Marker/MaxItems over a small list: the marker is the key of the last item returned."""
    marker = call.params.get("Marker")
    limit = call.params.get("MaxItems", 100)
    items = sorted(items, key=key)
    if marker is not None:
        items = [i for i in items if key(i) > marker]
    page = items[:limit]
    more = len(items) > limit
    return page, ({"IsTruncated": True, "Marker": key(page[-1])} if more else {"IsTruncated": False})


def tag_list(tags: Any) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


async def create_user(call: IamCall) -> dict[str, Any]:
    tags = check_tags(call.params.get("Tags", []))
    row = await call.identity.create_user(call.account, call.params["UserName"], call.params.get("Path", "/"), tags)
    out = _user(call, row)
    if tags:
        out["Tags"] = tag_list(tags)
    return {"User": out}


async def get_user(call: IamCall) -> dict[str, Any]:
    out = _user(call, await call.identity.get_user(call.account, call.target_user()))
    tags = await call.identity.entities.tags(call.account, "user", out["UserName"])
    if tags:
        out["Tags"] = tag_list(tags)
    return {"User": out}


async def list_users(call: IamCall) -> dict[str, Any]:
    prefix = call.params.get("PathPrefix", "/")
    limit = call.params.get("MaxItems", 100)
    after = call.params.get("Marker", "")
    found: list[User] = []
    while len(found) <= limit:
        rows = await call.identity.list_users(call.account, after, limit + 1)
        found += [r for r in rows if r.path.startswith(prefix)]
        if len(rows) <= limit:
            break
        after = rows[-1].name
    page = found[:limit]
    result: dict[str, Any] = {"Users": [_user(call, r) for r in page], "IsTruncated": len(found) > limit}
    if len(found) > limit:
        result["Marker"] = page[-1].name
    return result


async def delete_user(call: IamCall) -> None:
    await call.identity.delete_user(call.account, call.params["UserName"])


def _key(row: AccessKey, secret: bool = False) -> dict[str, Any]:
    out = {"UserName": row.user_name, "AccessKeyId": row.id, "Status": row.status, "CreateDate": row.created_at}
    if secret:
        out["SecretAccessKey"] = row.secret
    return out


async def create_access_key(call: IamCall) -> dict[str, Any]:
    row = await call.identity.create_access_key(call.account, call.target_user())
    return {"AccessKey": _key(row, secret=True)}


async def list_access_keys(call: IamCall) -> dict[str, Any]:
    keys = await call.identity.list_access_keys(call.account, call.target_user())
    page, more = _page(call, keys, lambda k: k.id)
    return {"AccessKeyMetadata": [_key(k) for k in page], **more}


async def update_access_key(call: IamCall) -> None:
    await call.identity.update_access_key(call.account, call.target_user(), call.params["AccessKeyId"],
                                          call.params["Status"])


async def delete_access_key(call: IamCall) -> None:
    await call.identity.delete_access_key(call.account, call.target_user(), call.params["AccessKeyId"])


async def put_user_policy(call: IamCall) -> None:
    p = call.params
    await call.identity.put_user_policy(call.account, p["UserName"], p["PolicyName"], p["PolicyDocument"])


async def get_user_policy(call: IamCall) -> dict[str, Any]:
    user, name = call.params["UserName"], call.params["PolicyName"]
    await call.identity.get_user(call.account, user)
    document = await call.identity.get_user_policy(call.account, user, name)
    # IAM sends the document URL-encoded; botocore decodes it (and parses the JSON) for the caller.
    return {"UserName": user, "PolicyName": name, "PolicyDocument": quote(document, safe="")}


async def list_user_policies(call: IamCall) -> dict[str, Any]:
    names = await call.identity.list_user_policies(call.account, call.params["UserName"])
    page, more = _page(call, names, str)
    return {"PolicyNames": page, **more}


async def delete_user_policy(call: IamCall) -> None:
    await call.identity.get_user(call.account, call.params["UserName"])
    await call.identity.delete_user_policy(call.account, call.params["UserName"], call.params["PolicyName"])


async def get_caller_identity(call: IamCall) -> dict[str, Any]:
    p = call.principal
    if p.user is None:
        return {"UserId": p.account, "Account": p.account, "Arn": p.arn}
    row = await call.identity.get_user(p.account, p.user)
    return {"UserId": row.user_id, "Account": p.account, "Arn": p.arn}


def _op(handler: Handler, *params: str, authorize: bool = True) -> Operation:
    return Operation(handler, frozenset(params), authorize)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("iam", "CreateUser"): _op(create_user, "UserName", "Path", "Tags"),
    ("iam", "GetUser"): _op(get_user, "UserName"),
    ("iam", "ListUsers"): _op(list_users, "PathPrefix", "Marker", "MaxItems"),
    ("iam", "DeleteUser"): _op(delete_user, "UserName"),
    ("iam", "CreateAccessKey"): _op(create_access_key, "UserName"),
    ("iam", "ListAccessKeys"): _op(list_access_keys, "UserName", "Marker", "MaxItems"),
    ("iam", "UpdateAccessKey"): _op(update_access_key, "UserName", "AccessKeyId", "Status"),
    ("iam", "DeleteAccessKey"): _op(delete_access_key, "UserName", "AccessKeyId"),
    ("iam", "PutUserPolicy"): _op(put_user_policy, "UserName", "PolicyName", "PolicyDocument"),
    ("iam", "GetUserPolicy"): _op(get_user_policy, "UserName", "PolicyName"),
    ("iam", "ListUserPolicies"): _op(list_user_policies, "UserName", "Marker", "MaxItems"),
    ("iam", "DeleteUserPolicy"): _op(delete_user_policy, "UserName", "PolicyName"),
    ("sts", "GetCallerIdentity"): _op(get_caller_identity, authorize=False),
}


def request_tags(params: dict[str, Any]) -> dict[str, str | list[str]]:
    """aws:RequestTag/<key> and aws:TagKeys of an IAM request that carries Tags or TagKeys."""
    out: dict[str, str | list[str]] = {}
    keys: list[str] = []
    for t in params.get("Tags", []) if isinstance(params.get("Tags"), list) else []:
        out[f"aws:RequestTag/{t['Key']}"] = t.get("Value", "")
        keys.append(t["Key"])
    keys += params.get("TagKeys", []) if isinstance(params.get("TagKeys"), list) else []
    if keys:
        out["aws:TagKeys"] = keys
    return out


def _signed_service(method: str, raw_path: str, query: str, headers: Any) -> str | None:
    try:
        service = sigv4.parse_authorization(method, raw_path, query, headers).service
    except sigv4.SigV4Error:
        return None
    return service if service in model.SERVICES else None


def _content_type(headers: Any) -> str:
    for name, value in headers:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        if n.lower() == "content-type":
            return str(value.decode("latin-1") if isinstance(value, bytes) else value).lower()
    return ""


class IamQueryApi:
    def __init__(self, identity: IdentityService, authenticator: Authenticator, authorizer: Authorizer,
                 operations: dict[tuple[str, str], Operation] | None = None, audit: AuditTrail | None = None,
                 limits: Limits | None = None) -> None:
        self.limits = limits
        self.identity = identity
        self.authn = authenticator
        self.authz = authorizer
        self.operations = OPERATIONS if operations is None else operations
        self._failures = FailureLog(log)
        self.audit = audit

    async def handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes, client_ip: str,
                     secure: bool, host: str,
                     log_note: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        """`log_note` is the access log's (berth/observe), when it runs; the audit note is the trail's."""
        note = AuditNote("iam.amazonaws.com", client_ip, user_agent(headers))
        out = await self._handle(method, raw_path, query, headers, body, client_ip, secure, host, note, log_note)
        if note.retry_after:
            out[1]["Retry-After"] = retry_after(note.retry_after)
        if self.audit is not None:
            if out[0] != 200:
                note.error_code, note.error_message = xml_error(out[2])
            await self.audit.record(note)
        return out

    async def _handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes, client_ip: str,
                      secure: bool, host: str, note: AuditNote,
                      log_note: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        request_id = note.request_id
        service = "iam"
        try:
            raw = model.parse_form(body, query)
            action = raw.get("Action")
            note.event_name = str(action or "")[:128]
            if not action:
                if _content_type(headers).startswith("application/x-amz-json"):
                    # A JSON-protocol client without X-Amz-Target: answer in its own format.
                    out = json.dumps({"__type": "UnknownOperationException", "message": "missing X-Amz-Target"})
                    return 400, {"Content-Type": _content_type(headers), "x-amzn-RequestId": request_id}, out.encode()
                raise model.QueryError("MissingAction", "The request must contain the parameter Action.")
            version = raw.get("Version")
            # The Version names the face (one port serves both); without one, the signed scope does.
            service = (model.service_for_version(version) or _signed_service(method, raw_path, query, headers)
                       or "iam")
            note.source = SOURCES.get(service, note.source)
            if (service, action) in UNSIGNED:  # the SDKs send these unsigned by design: the token is the credential
                principal = Principal(account="", arn="")
            else:
                principal, _ = await self.authn.aws_principal(method, raw_path, query, headers, body,
                                                              service=service)
                note.caller(principal)
                if self.limits is not None and (wait := self.limits.check(principal)):
                    note.retry_after = wait
                    raise model.QueryError("Throttling", message(wait))
            if log_note is not None:
                log_note.update(principal=principal.arn or None, account=principal.account or None, operation=action,
                                face=service)
            op_model = model.operation_model(service, action)
            if op_model is None or (version is not None and version != model.api_version(service)):
                raise model.QueryError("InvalidAction", f"Could not find operation {action} for version {version}")
            operation = self.operations.get((service, action))
            if operation is None:
                raise model.QueryError("InvalidAction",
                                       f"Berth does not support the {service.upper()} operation {action} yet.")
            params = model.validate(op_model, raw, operation.params)
            note.request_parameters = params
            call = IamCall(service, action, params, principal,
                           Context(client_ip, secure, extra=request_tags(params)), self.identity, self.authz)
            if operation.authorize:
                resource = await call.resource()
                permission = f"{service}:{action}"
                decision = await self.authz.authorize(principal, permission, resource, call.context)
                if not decision.allowed and log_note is not None:
                    log_note["denied"] = permission
                if not decision.allowed:
                    raise model.QueryError("AccessDenied", f"User: {principal.arn} is not authorized to perform: "
                                                           f"{permission} on resource: {resource} because "
                                                           f"{decision.reason}")
            result = await operation.handler(call)
            note.response_elements = result
            return 200, self._headers(request_id), xml.result_document(service, op_model, result, request_id)
        except sigv4.SigV4Error as e:
            return self._error(service, SIGV4_ERRORS.get(type(e), "IncompleteSignature"), e.message, request_id)
        except model.QueryError as e:
            return self._error(service, e.code, e.message, request_id)
        except IamError as e:
            return self._error(service, e.code, e.message, request_id, e.status)
        except Exception as exc:  # never a bare 500: ServiceFailure is IAM's own fault shape
            failure = from_failure(exc)
            if failure is not None:  # said once, loudly, and in the answer
                self._failures.note(failure, exc, f"IAM/STS (request id {request_id})")
                if failure.code == "STORAGE_FULL":
                    return self._error(service, "ServiceFailure", failure.message, request_id)
                # the database or the store is away: 503, which the SDKs retry
                return self._error(service, "ServiceUnavailable", failure.message, request_id, 503)
            log.exception("IAM/STS request failed; request id %s", request_id)
            return self._error(service, "ServiceFailure", "internal error", request_id)

    @staticmethod
    def _headers(request_id: str) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}

    def _error(self, service: str, code: str, message: str, request_id: str,
               status: int | None = None) -> tuple[int, dict[str, str], bytes]:
        status = status or STATUS[code]
        return status, self._headers(request_id), xml.error_document(service, code, message, request_id,
                                                                       sender=status < 500)
