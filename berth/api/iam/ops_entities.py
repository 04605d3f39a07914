"""IAM groups, roles, managed policies and attachments; STS AssumeRole and GetSessionToken."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from berth.api.iam.app import IamCall, Operation, _op, _page, _user, tag_list
from berth.api.iam.model import QueryError
from berth.iam import oidc
from berth.iam.authz import Principal, assumed_role_arn, role_arn
from berth.iam.entities import check_identity_policy, check_tags
from berth.iam.errors import AccessDenied, ExpiredWebIdentityToken, InvalidIdentityToken, NoSuchEntity
from berth.iam.managed import AWS_MANAGED
from berth.iam.model import Group, ManagedPolicy, PolicyVersion, Role
from berth.iam.sessions import SessionClaims, new_access_key_id

_ROLE_ARN = re.compile(r"arn:aws:iam::(\d{12}):role(/(?:[\x21-\x7e]*/)?)([\w+=,.@-]{1,64})")


def _role_parts(arn: str) -> tuple[str, str, str]:
    """(account, path, name) of a role ARN, or STS's ValidationError."""
    m = _ROLE_ARN.fullmatch(arn)
    if m is None:
        raise QueryError("ValidationError", f"{arn} is invalid")
    return m.group(1), m.group(2), m.group(3)
SESSION_DURATION = (900, 3600)  # AssumeRole: at least 15 minutes; one hour unless asked
SESSION_TOKEN_DURATION = (900, 129600, 43200)  # GetSessionToken: 15 min .. 36 h, 12 h by default


def _url(document: str) -> str:
    return quote(document, safe="")  # IAM sends policy documents URL-encoded; botocore decodes them


def _group(call: IamCall, g: Group) -> dict[str, Any]:
    return {"Path": g.path, "GroupName": g.name, "GroupId": g.group_id,
            "Arn": f"arn:aws:iam::{call.account}:group{g.path}{g.name}", "CreateDate": g.created_at}


def _role(call: IamCall, r: Role) -> dict[str, Any]:
    out = {"Path": r.path, "RoleName": r.name, "RoleId": r.role_id, "Arn": role_arn(call.account, r.name, r.path),
           "CreateDate": r.created_at, "AssumeRolePolicyDocument": _url(r.trust_policy),
           "MaxSessionDuration": r.max_session_duration}
    if r.description:
        out["Description"] = r.description
    return out


async def _policy(call: IamCall, p: ManagedPolicy) -> dict[str, Any]:
    attachments = await call.identity.entities.attachment_count(p.arn)
    out = {"PolicyName": p.name, "PolicyId": p.policy_id, "Arn": p.arn, "Path": p.path,
           "DefaultVersionId": p.default_version, "AttachmentCount": attachments,
           "PermissionsBoundaryUsageCount": 0,
           "IsAttachable": p.arn not in AWS_MANAGED or AWS_MANAGED[p.arn].attachable, "CreateDate": p.created_at,
           "UpdateDate": p.updated_at}
    if p.description:
        out["Description"] = p.description
    return out


def _version(v: PolicyVersion, default: str) -> dict[str, Any]:
    return {"Document": _url(v.document), "VersionId": v.version_id, "IsDefaultVersion": v.version_id == default,
            "CreateDate": v.created_at}


# groups

async def create_group(call: IamCall) -> dict[str, Any]:
    g = await call.identity.entities.create_group(call.account, call.params["GroupName"], call.params.get("Path", "/"))
    return {"Group": _group(call, g)}


async def get_group(call: IamCall) -> dict[str, Any]:
    e = call.identity.entities
    g = await e.get_group(call.account, call.params["GroupName"])
    names, more = _page(call, await e.members(call.account, g.name), str)
    users = [_user(call, await call.identity.get_user(call.account, n)) for n in names]
    return {"Group": _group(call, g), "Users": users, **more}


async def list_groups(call: IamCall) -> dict[str, Any]:
    prefix = call.params.get("PathPrefix", "/")
    groups = [g for g in await call.identity.entities.list_groups(call.account) if g.path.startswith(prefix)]
    page, more = _page(call, groups, lambda g: g.name)
    return {"Groups": [_group(call, g) for g in page], **more}


async def delete_group(call: IamCall) -> None:
    await call.identity.entities.delete_group(call.account, call.params["GroupName"])


async def add_user_to_group(call: IamCall) -> None:
    await call.identity.entities.add_user_to_group(call.account, call.params["GroupName"], call.params["UserName"])


async def remove_user_from_group(call: IamCall) -> None:
    await call.identity.entities.remove_user_from_group(call.account, call.params["GroupName"],
                                                        call.params["UserName"])


async def list_groups_for_user(call: IamCall) -> dict[str, Any]:
    groups = await call.identity.entities.groups_for_user(call.account, call.params["UserName"])
    page, more = _page(call, groups, lambda g: g.name)
    return {"Groups": [_group(call, g) for g in page], **more}


# inline policies of groups and roles

def _inline(kind: str, key: str) -> tuple[Any, Any, Any, Any]:
    async def put(call: IamCall) -> None:
        p = call.params
        await call.identity.entities.put_inline(call.account, kind, p[key], p["PolicyName"], p["PolicyDocument"])

    async def get(call: IamCall) -> dict[str, Any]:
        p = call.params
        doc = await call.identity.entities.get_inline(call.account, kind, p[key], p["PolicyName"])
        return {key: p[key], "PolicyName": p["PolicyName"], "PolicyDocument": _url(doc)}

    async def list_(call: IamCall) -> dict[str, Any]:
        names = await call.identity.entities.list_inline(call.account, kind, call.params[key])
        page, more = _page(call, names, str)
        return {"PolicyNames": page, **more}

    async def delete(call: IamCall) -> None:
        p = call.params
        await call.identity.entities.delete_inline(call.account, kind, p[key], p["PolicyName"])

    return put, get, list_, delete


put_group_policy, get_group_policy, list_group_policies, delete_group_policy = _inline("group", "GroupName")
put_role_policy, get_role_policy, list_role_policies, delete_role_policy = _inline("role", "RoleName")


# roles

async def create_role(call: IamCall) -> dict[str, Any]:
    p = call.params
    tags = check_tags(p.get("Tags", []))
    r = await call.identity.entities.create_role(call.account, p["RoleName"], p["AssumeRolePolicyDocument"],
                                                 p.get("Path", "/"), p.get("Description", ""),
                                                 p.get("MaxSessionDuration", 3600), tags)
    out = _role(call, r)
    if tags:
        out["Tags"] = tag_list(tags)
    return {"Role": out}


async def get_role(call: IamCall) -> dict[str, Any]:
    out = _role(call, await call.identity.entities.get_role(call.account, call.params["RoleName"]))
    tags = await call.identity.entities.tags(call.account, "role", out["RoleName"])
    if tags:
        out["Tags"] = tag_list(tags)
    return {"Role": out}


# tags of users and roles

def _tagging(kind: str, key: str) -> tuple[Any, Any, Any]:
    async def tag(call: IamCall) -> None:
        await call.identity.entities.tag(call.account, kind, call.params[key], check_tags(call.params["Tags"]))

    async def untag(call: IamCall) -> None:
        await call.identity.entities.untag(call.account, kind, call.params[key], call.params["TagKeys"])

    async def list_(call: IamCall) -> dict[str, Any]:
        tags = await call.identity.entities.tags(call.account, kind, call.params[key])
        page, more = _page(call, tags, lambda t: t[0].lower())
        return {"Tags": tag_list(page), **more}

    return tag, untag, list_


tag_user, untag_user, list_user_tags = _tagging("user", "UserName")
tag_role, untag_role, list_role_tags = _tagging("role", "RoleName")


async def list_roles(call: IamCall) -> dict[str, Any]:
    prefix = call.params.get("PathPrefix", "/")
    roles = [r for r in await call.identity.entities.list_roles(call.account) if r.path.startswith(prefix)]
    page, more = _page(call, roles, lambda r: r.name)
    return {"Roles": [_role(call, r) for r in page], **more}


async def delete_role(call: IamCall) -> None:
    await call.identity.entities.delete_role(call.account, call.params["RoleName"])


async def update_assume_role_policy(call: IamCall) -> None:
    await call.identity.entities.update_trust(call.account, call.params["RoleName"], call.params["PolicyDocument"])


# managed policies

async def create_policy(call: IamCall) -> dict[str, Any]:
    p = call.params
    row = await call.identity.entities.create_policy(call.account, p["PolicyName"], p["PolicyDocument"],
                                                     p.get("Path", "/"), p.get("Description", ""))
    return {"Policy": await _policy(call, row)}


async def get_policy(call: IamCall) -> dict[str, Any]:
    return {"Policy": await _policy(call, await call.identity.entities.get_policy(call.params["PolicyArn"]))}


async def list_policies(call: IamCall) -> dict[str, Any]:
    p = call.params
    prefix = p.get("PathPrefix", "/")
    rows = [r for r in await call.identity.entities.list_policies(call.account, p.get("Scope", "All"))
            if r.path.startswith(prefix)]
    out = [await _policy(call, r) for r in rows]
    if p.get("OnlyAttached"):
        out = [o for o in out if o["AttachmentCount"]]
    page, more = _page(call, out, lambda o: o["Arn"])
    return {"Policies": page, **more}


async def delete_policy(call: IamCall) -> None:
    await call.identity.entities.delete_policy(call.account, call.params["PolicyArn"])


async def create_policy_version(call: IamCall) -> dict[str, Any]:
    p = call.params
    e = call.identity.entities
    v = await e.create_version(call.account, p["PolicyArn"], p["PolicyDocument"], bool(p.get("SetAsDefault")))
    return {"PolicyVersion": _version(v, (await e.get_policy(p["PolicyArn"])).default_version)}


async def get_policy_version(call: IamCall) -> dict[str, Any]:
    e = call.identity.entities
    policy = await e.get_policy(call.params["PolicyArn"])
    v = await e.get_version(policy.arn, call.params["VersionId"])
    return {"PolicyVersion": _version(v, policy.default_version)}


async def list_policy_versions(call: IamCall) -> dict[str, Any]:
    e = call.identity.entities
    policy = await e.get_policy(call.params["PolicyArn"])
    versions = [_version(v, policy.default_version) for v in await e.list_versions(policy.arn)]
    for v in versions:
        del v["Document"]  # IAM lists versions without their documents
    page, more = _page(call, versions, lambda v: f"{10**9 - int(v['VersionId'][1:]):09d}")  # newest first
    return {"Versions": page, **more}


async def set_default_policy_version(call: IamCall) -> None:
    p = call.params
    await call.identity.entities.set_default_version(call.account, p["PolicyArn"], p["VersionId"])


async def delete_policy_version(call: IamCall) -> None:
    p = call.params
    await call.identity.entities.delete_version(call.account, p["PolicyArn"], p["VersionId"])


# attachments

def _attachments(kind: str, key: str) -> tuple[Any, Any, Any]:
    async def attach(call: IamCall) -> None:
        await call.identity.entities.attach(call.account, kind, call.params[key], call.params["PolicyArn"])

    async def detach(call: IamCall) -> None:
        await call.identity.entities.detach(call.account, kind, call.params[key], call.params["PolicyArn"])

    async def list_(call: IamCall) -> dict[str, Any]:
        prefix = call.params.get("PathPrefix", "/")
        rows = [r for r in await call.identity.entities.attached(call.account, kind, call.params[key])
                if r.path.startswith(prefix)]
        page, more = _page(call, rows, lambda r: r.arn)
        return {"AttachedPolicies": [{"PolicyName": r.name, "PolicyArn": r.arn} for r in page], **more}

    return attach, detach, list_


attach_user_policy, detach_user_policy, list_attached_user_policies = _attachments("user", "UserName")
attach_group_policy, detach_group_policy, list_attached_group_policies = _attachments("group", "GroupName")
attach_role_policy, detach_role_policy, list_attached_role_policies = _attachments("role", "RoleName")


# STS

def _credentials(call: IamCall, claims: SessionClaims) -> dict[str, Any]:
    token, secret = call.identity.issue_session(claims)
    return {"AccessKeyId": claims.access_key_id, "SecretAccessKey": secret, "SessionToken": token,
            "Expiration": claims.expires_at}


def _duration(raw: Any, low: int, high: int, default: int, what: str) -> int:
    seconds = default if raw is None else int(raw)
    if not low <= seconds <= high:
        raise QueryError("ValidationError", f"The requested DurationSeconds exceeds the {what} set for this role."
                         if seconds > high else f"1 validation error detected: Value '{seconds}' at "
                         f"'durationSeconds' failed to satisfy constraint: Member must have value greater than "
                         f"or equal to {low}")
    return seconds


def _now(call: IamCall) -> datetime:
    return datetime.fromtimestamp(int(call.identity.clock()), UTC)


async def assume_role(call: IamCall) -> dict[str, Any]:
    p = call.params
    account, path, name = _role_parts(p["RoleArn"])
    role = await call.identity.entities.find_role(account, name)
    denied = AccessDenied(f"User: {call.principal.arn} is not authorized to perform: sts:AssumeRole on resource: "
                          f"{p['RoleArn']}")
    if role is None or role.path != path:
        raise denied
    if p.get("Policy") is not None:
        check_identity_policy(p["Policy"])
    extra: dict[str, Any] = {"sts:ExternalId": p["ExternalId"]} if "ExternalId" in p else {}
    extra["sts:RoleSessionName"] = p["RoleSessionName"]
    tags = tuple(sorted((t["Key"], t.get("Value", "")) for t in p.get("Tags", [])))
    if len(dict(tags)) != len(tags):
        raise QueryError("ValidationError", "Duplicate tag keys found. Please note that Tag keys are case "
                         "insensitive.")
    for key, value in tags:
        extra[f"aws:RequestTag/{key}"] = value
    if tags:
        extra["aws:TagKeys"] = [k for k, _ in tags]
    decision = await call.authorizer.authorize_trust(call.principal, "sts:AssumeRole", p["RoleArn"],
                                                     role.trust_policy, call.context, extra)
    if decision.allowed and tags:  # passing session tags needs sts:TagSession in the trust policy too
        decision = await call.authorizer.authorize_trust(call.principal, "sts:TagSession", p["RoleArn"],
                                                         role.trust_policy, call.context, extra)
    if not decision.allowed:
        raise denied
    seconds = _duration(p.get("DurationSeconds"), SESSION_DURATION[0], role.max_session_duration,
                        SESSION_DURATION[1], "MaxSessionDuration")
    session = p["RoleSessionName"]
    arn = assumed_role_arn(account, name, session)
    claims = SessionClaims(new_access_key_id(), account, arn, _now(call) + timedelta(seconds=seconds),
                           role=name, role_path=role.path, role_id=role.role_id, session=session,
                           policy=p.get("Policy"), tags=tags)
    return {"Credentials": _credentials(call, claims),
            "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session}", "Arn": arn}, "PackedPolicySize": 0}


async def get_session_token(call: IamCall) -> dict[str, Any]:
    principal = call.principal
    if principal.access_key_id and principal.access_key_id.startswith("ASIA"):
        raise AccessDenied("Cannot call GetSessionToken with session credentials")
    if principal.user is None:
        raise AccessDenied("Berth's account root has no access keys to call GetSessionToken with")
    low, high, default = SESSION_TOKEN_DURATION
    seconds = _duration(call.params.get("DurationSeconds"), low, high, default, "maximum")
    user = await call.identity.get_user(principal.account, principal.user)
    claims = SessionClaims(new_access_key_id(), principal.account, principal.arn,
                           _now(call) + timedelta(seconds=seconds), user=user.name, user_id=user.user_id)
    return {"Credentials": _credentials(call, claims)}


async def get_caller_identity(call: IamCall) -> dict[str, Any]:
    p = call.principal
    if p.role:
        return {"UserId": f"{p.role_id}:{p.session}", "Account": p.account, "Arn": p.arn}
    if p.user is None:
        return {"UserId": p.account, "Account": p.account, "Arn": p.arn}
    try:
        row = await call.identity.get_user(p.account, p.user)
    except NoSuchEntity:
        raise AccessDenied("The principal no longer exists") from None
    return {"UserId": row.user_id, "Account": p.account, "Arn": p.arn}


# web identity

async def create_open_id_connect_provider(call: IamCall) -> dict[str, Any]:
    p = call.params
    arn = await call.identity.entities.create_oidc_provider(call.account, p["Url"], p.get("ClientIDList", []),
                                                            p.get("ThumbprintList", []))
    return {"OpenIDConnectProviderArn": arn}


async def get_open_id_connect_provider(call: IamCall) -> dict[str, Any]:
    row = await call.identity.entities.get_oidc_provider(call.params["OpenIDConnectProviderArn"])
    return {"Url": row.url, "ClientIDList": json.loads(row.client_ids), "ThumbprintList": json.loads(row.thumbprints),
            "CreateDate": row.created_at}


async def list_open_id_connect_providers(call: IamCall) -> dict[str, Any]:
    arns = await call.identity.entities.list_oidc_providers(call.account)
    return {"OpenIDConnectProviderList": [{"Arn": a} for a in arns]}


async def delete_open_id_connect_provider(call: IamCall) -> None:
    await call.identity.entities.delete_oidc_provider(call.params["OpenIDConnectProviderArn"])


async def assume_role_with_web_identity(call: IamCall) -> dict[str, Any]:
    """Unsigned, as the SDKs send it: the web identity token is the credential."""
    p = call.params
    account, path, name = _role_parts(p["RoleArn"])
    e = call.identity.entities
    issuer = oidc.unverified_issuer(p["WebIdentityToken"])
    provider = await e.find_oidc_provider(account, oidc.provider_url(issuer))
    if provider is None:
        raise InvalidIdentityToken(f"No OpenIDConnect provider found in your account for {issuer}")
    claims = await call.identity.issuer_keys.verify(p["WebIdentityToken"], provider.issuer,
                                                    json.loads(provider.client_ids))
    role = await e.find_role(account, name)
    denied = AccessDenied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    if role is None or role.path != path:
        raise denied
    if p.get("Policy") is not None:
        check_identity_policy(p["Policy"])
    provider_arn = e.oidc_arn(account, provider.url)
    aud = claims["aud"] if isinstance(claims["aud"], str) else next(
        a for a in claims["aud"] if a in json.loads(provider.client_ids))
    extra = {f"{provider.url}:sub": str(claims["sub"]), f"{provider.url}:aud": aud,
             f"{provider.url}:iss": str(claims["iss"]), "aws:FederatedProvider": provider_arn,
             "sts:RoleSessionName": p["RoleSessionName"]}
    caller = Principal(account=account, arn=provider_arn)
    decision = await call.authorizer.authorize_trust(caller, "sts:AssumeRoleWithWebIdentity", p["RoleArn"],
                                                     role.trust_policy, call.context, extra)
    if not decision.allowed:
        raise denied
    seconds = _duration(p.get("DurationSeconds"), SESSION_DURATION[0], role.max_session_duration,
                        SESSION_DURATION[1], "MaxSessionDuration")
    session = p["RoleSessionName"]
    arn = assumed_role_arn(account, name, session)
    session_claims = SessionClaims(new_access_key_id(), account, arn, _now(call) + timedelta(seconds=seconds),
                                   role=name, role_path=role.path, role_id=role.role_id, session=session,
                                   policy=p.get("Policy"))
    return {"Credentials": _credentials(call, session_claims), "SubjectFromWebIdentityToken": str(claims["sub"]),
            "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session}", "Arn": arn}, "PackedPolicySize": 0,
            "Provider": provider_arn, "Audience": aud}


# SAML 2.0 federation

_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


async def create_saml_provider(call: IamCall) -> dict[str, Any]:
    arn = await call.identity.entities.create_saml_provider(call.account, call.params["Name"],
                                                            call.params["SAMLMetadataDocument"])
    return {"SAMLProviderArn": arn}


async def get_saml_provider(call: IamCall) -> dict[str, Any]:
    row = await call.identity.entities.get_saml_provider(call.params["SAMLProviderArn"])
    if row.account_id != call.account:
        raise NoSuchEntity(f"Manifest not found for arn {call.params['SAMLProviderArn']}")
    out: dict[str, Any] = {"SAMLProviderUUID": row.provider_uuid, "SAMLMetadataDocument": row.metadata_document,
                           "CreateDate": row.created_at}
    if row.valid_until is not None:
        out["ValidUntil"] = row.valid_until
    return out


async def list_saml_providers(call: IamCall) -> dict[str, Any]:
    e = call.identity.entities
    entries = []
    for row in await e.list_saml_providers(call.account):
        entry: dict[str, Any] = {"Arn": e.saml_arn(row.account_id, row.name), "CreateDate": row.created_at}
        if row.valid_until is not None:
            entry["ValidUntil"] = row.valid_until
        entries.append(entry)
    return {"SAMLProviderList": entries}


async def delete_saml_provider(call: IamCall) -> None:
    account, _ = call.identity.entities.saml_key(call.params["SAMLProviderArn"])
    if account != call.account:
        raise NoSuchEntity(f"SAMLProvider {call.params['SAMLProviderArn']} not found")
    await call.identity.entities.delete_saml_provider(call.params["SAMLProviderArn"])


async def assume_role_with_saml(call: IamCall) -> dict[str, Any]:
    """Unsigned, as the SDKs send it: the IdP-signed SAML response is the credential."""
    from berth.iam import saml  # lxml and signxml: loaded only where SAML is used

    p = call.params
    account, path, name = _role_parts(p["RoleArn"])
    e = call.identity.entities
    provider_account, provider_name = e.saml_key(p["PrincipalArn"])
    provider = await e.find_saml_provider(provider_account, provider_name) if provider_account == account else None
    if provider is None:
        raise InvalidIdentityToken(f"Specified provider doesn't exist: {p['PrincipalArn']}")
    try:
        metadata = saml.parse_metadata(provider.metadata_document)
        assertion = saml.verify_response(p["SAMLAssertion"], metadata, _now(call))
    except saml.SamlExpired as exc:
        raise ExpiredWebIdentityToken(str(exc)) from None
    except saml.SamlError as exc:
        raise InvalidIdentityToken(str(exc)) from None
    denied = AccessDenied("Not authorized to perform sts:AssumeRoleWithSAML")
    if (p["RoleArn"], p["PrincipalArn"]) not in assertion.roles:  # the IdP names the roles it vouches for
        raise denied
    session = assertion.session_name
    if session is None or not _SESSION_NAME.fullmatch(session):
        raise InvalidIdentityToken("The assertion's RoleSessionName attribute is missing or not 2-64 characters "
                                   "of [\\w+=,.@-]")
    role = await e.find_role(account, name)
    if role is None or role.path != path:
        raise denied
    if p.get("Policy") is not None:
        check_identity_policy(p["Policy"])
    qualifier = saml.name_qualifier(assertion.issuer, account, provider_name)
    extra = {"SAML:aud": assertion.recipient, "SAML:sub": assertion.subject, "SAML:sub_type": assertion.subject_type,
             "SAML:iss": assertion.issuer, "SAML:namequalifier": qualifier,
             "SAML:doc": f"{account}/{provider_name}", "aws:FederatedProvider": p["PrincipalArn"]}
    caller = Principal(account=account, arn=p["PrincipalArn"])
    decision = await call.authorizer.authorize_trust(caller, "sts:AssumeRoleWithSAML", p["RoleArn"],
                                                     role.trust_policy, call.context, extra)
    if not decision.allowed:
        raise denied
    asked = p.get("DurationSeconds", assertion.session_duration)  # the request's, else the IdP's SessionDuration
    seconds = _duration(asked, SESSION_DURATION[0], role.max_session_duration, SESSION_DURATION[1],
                        "MaxSessionDuration")
    arn = assumed_role_arn(account, name, session)
    claims = SessionClaims(new_access_key_id(), account, arn, _now(call) + timedelta(seconds=seconds),
                           role=name, role_path=role.path, role_id=role.role_id, session=session,
                           policy=p.get("Policy"))
    return {"Credentials": _credentials(call, claims),
            "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session}", "Arn": arn}, "PackedPolicySize": 0,
            "Subject": assertion.subject, "SubjectType": assertion.subject_type, "Issuer": assertion.issuer,
            "Audience": assertion.recipient, "NameQualifier": qualifier}


_PAGE = ("Marker", "MaxItems")
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("iam", "CreateGroup"): _op(create_group, "GroupName", "Path"),
    ("iam", "GetGroup"): _op(get_group, "GroupName", *_PAGE),
    ("iam", "ListGroups"): _op(list_groups, "PathPrefix", *_PAGE),
    ("iam", "DeleteGroup"): _op(delete_group, "GroupName"),
    ("iam", "AddUserToGroup"): _op(add_user_to_group, "GroupName", "UserName"),
    ("iam", "RemoveUserFromGroup"): _op(remove_user_from_group, "GroupName", "UserName"),
    ("iam", "ListGroupsForUser"): _op(list_groups_for_user, "UserName", *_PAGE),
    ("iam", "PutGroupPolicy"): _op(put_group_policy, "GroupName", "PolicyName", "PolicyDocument"),
    ("iam", "GetGroupPolicy"): _op(get_group_policy, "GroupName", "PolicyName"),
    ("iam", "ListGroupPolicies"): _op(list_group_policies, "GroupName", *_PAGE),
    ("iam", "DeleteGroupPolicy"): _op(delete_group_policy, "GroupName", "PolicyName"),
    ("iam", "CreateRole"): _op(create_role, "RoleName", "Path", "AssumeRolePolicyDocument", "Description",
                               "MaxSessionDuration", "Tags"),
    ("iam", "TagUser"): _op(tag_user, "UserName", "Tags"),
    ("iam", "UntagUser"): _op(untag_user, "UserName", "TagKeys"),
    ("iam", "ListUserTags"): _op(list_user_tags, "UserName", *_PAGE),
    ("iam", "TagRole"): _op(tag_role, "RoleName", "Tags"),
    ("iam", "UntagRole"): _op(untag_role, "RoleName", "TagKeys"),
    ("iam", "ListRoleTags"): _op(list_role_tags, "RoleName", *_PAGE),
    ("iam", "GetRole"): _op(get_role, "RoleName"),
    ("iam", "ListRoles"): _op(list_roles, "PathPrefix", *_PAGE),
    ("iam", "DeleteRole"): _op(delete_role, "RoleName"),
    ("iam", "UpdateAssumeRolePolicy"): _op(update_assume_role_policy, "RoleName", "PolicyDocument"),
    ("iam", "PutRolePolicy"): _op(put_role_policy, "RoleName", "PolicyName", "PolicyDocument"),
    ("iam", "GetRolePolicy"): _op(get_role_policy, "RoleName", "PolicyName"),
    ("iam", "ListRolePolicies"): _op(list_role_policies, "RoleName", *_PAGE),
    ("iam", "DeleteRolePolicy"): _op(delete_role_policy, "RoleName", "PolicyName"),
    ("iam", "CreatePolicy"): _op(create_policy, "PolicyName", "Path", "PolicyDocument", "Description"),
    ("iam", "GetPolicy"): _op(get_policy, "PolicyArn"),
    ("iam", "ListPolicies"): _op(list_policies, "Scope", "OnlyAttached", "PathPrefix", *_PAGE),
    ("iam", "DeletePolicy"): _op(delete_policy, "PolicyArn"),
    ("iam", "CreatePolicyVersion"): _op(create_policy_version, "PolicyArn", "PolicyDocument", "SetAsDefault"),
    ("iam", "GetPolicyVersion"): _op(get_policy_version, "PolicyArn", "VersionId"),
    ("iam", "ListPolicyVersions"): _op(list_policy_versions, "PolicyArn", *_PAGE),
    ("iam", "SetDefaultPolicyVersion"): _op(set_default_policy_version, "PolicyArn", "VersionId"),
    ("iam", "DeletePolicyVersion"): _op(delete_policy_version, "PolicyArn", "VersionId"),
    ("iam", "AttachUserPolicy"): _op(attach_user_policy, "UserName", "PolicyArn"),
    ("iam", "DetachUserPolicy"): _op(detach_user_policy, "UserName", "PolicyArn"),
    ("iam", "ListAttachedUserPolicies"): _op(list_attached_user_policies, "UserName", "PathPrefix", *_PAGE),
    ("iam", "AttachGroupPolicy"): _op(attach_group_policy, "GroupName", "PolicyArn"),
    ("iam", "DetachGroupPolicy"): _op(detach_group_policy, "GroupName", "PolicyArn"),
    ("iam", "ListAttachedGroupPolicies"): _op(list_attached_group_policies, "GroupName", "PathPrefix", *_PAGE),
    ("iam", "AttachRolePolicy"): _op(attach_role_policy, "RoleName", "PolicyArn"),
    ("iam", "DetachRolePolicy"): _op(detach_role_policy, "RoleName", "PolicyArn"),
    ("iam", "ListAttachedRolePolicies"): _op(list_attached_role_policies, "RoleName", "PathPrefix", *_PAGE),
    # The caller's own permissions decide AssumeRole (with the role's trust policy, in the handler);
    # GetSessionToken and GetCallerIdentity need none, as in AWS.
    ("sts", "AssumeRole"): _op(assume_role, "RoleArn", "RoleSessionName", "DurationSeconds", "ExternalId",
                               "Policy", "Tags", authorize=False),
    ("sts", "GetSessionToken"): _op(get_session_token, "DurationSeconds", authorize=False),
    ("sts", "GetCallerIdentity"): _op(get_caller_identity, authorize=False),
    ("sts", "AssumeRoleWithWebIdentity"): _op(assume_role_with_web_identity, "RoleArn", "RoleSessionName",
                                              "WebIdentityToken", "DurationSeconds", "Policy", authorize=False),
    ("sts", "AssumeRoleWithSAML"): _op(assume_role_with_saml, "RoleArn", "PrincipalArn", "SAMLAssertion",
                                       "DurationSeconds", "Policy", authorize=False),
    ("iam", "CreateSAMLProvider"): _op(create_saml_provider, "Name", "SAMLMetadataDocument"),
    ("iam", "GetSAMLProvider"): _op(get_saml_provider, "SAMLProviderArn"),
    ("iam", "ListSAMLProviders"): _op(list_saml_providers),
    ("iam", "DeleteSAMLProvider"): _op(delete_saml_provider, "SAMLProviderArn"),
    ("iam", "CreateOpenIDConnectProvider"): _op(create_open_id_connect_provider, "Url", "ClientIDList",
                                                "ThumbprintList"),
    ("iam", "GetOpenIDConnectProvider"): _op(get_open_id_connect_provider, "OpenIDConnectProviderArn"),
    ("iam", "ListOpenIDConnectProviders"): _op(list_open_id_connect_providers),
    ("iam", "DeleteOpenIDConnectProvider"): _op(delete_open_id_connect_provider, "OpenIDConnectProviderArn"),
}
