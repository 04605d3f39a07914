"""ECR repository creation templates: Create/Describe/Update/DeleteRepositoryCreationTemplate."""

from __future__ import annotations

from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError
from berth.api.ecr.paging import decode_token, encode_token
from berth.registry.templates import Template, TemplateError, Templates

_ERRORS = {"ALREADY_EXISTS": "TemplateAlreadyExistsException", "NOT_FOUND": "TemplateNotFoundException",
           "LIMIT": "LimitExceededException"}


def template_shape(t: Template) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "prefix": t.prefix,
        "appliedFor": list(t.applied_for),
        "imageTagMutability": t.mutability.mode,
        "encryptionConfiguration": {"encryptionType": t.encryption.kind,
                                    **({"kmsKey": t.encryption.kms_key} if t.encryption.kms_key else {})},
        "resourceTags": [{"Key": k, "Value": v} for k, v in t.resource_tags],
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
    }
    if t.description:
        shape["description"] = t.description
    if t.mutability.filters:
        shape["imageTagMutabilityExclusionFilters"] = [{"filterType": f.kind, "filter": f.pattern}
                                                       for f in t.mutability.filters]
    if t.repository_policy:
        shape["repositoryPolicy"] = t.repository_policy
    if t.lifecycle_policy:
        shape["lifecyclePolicy"] = t.lifecycle_policy
    if t.custom_role_arn:
        shape["customRoleArn"] = t.custom_role_arn
    return shape


def _templates(c: EcrCall) -> Templates:
    t = c.services.templates
    if t is None:
        raise EcrError("ValidationException", "repository creation templates are not configured")
    return t


async def _run(c: EcrCall, fn: Any, *args: Any) -> Any:
    try:
        return await fn(*args)
    except TemplateError as e:
        raise EcrError(_ERRORS[e.kind], e.message) from None


async def create_template(c: EcrCall) -> dict[str, Any]:
    t = await _run(c, _templates(c).create, c.principal.account, c.region, c.params)
    return {"registryId": c.principal.account, "repositoryCreationTemplate": template_shape(t)}


async def update_template(c: EcrCall) -> dict[str, Any]:
    t = await _run(c, _templates(c).update, c.principal.account, c.region, c.params)
    return {"registryId": c.principal.account, "repositoryCreationTemplate": template_shape(t)}


async def delete_template(c: EcrCall) -> dict[str, Any]:
    t = await _run(c, _templates(c).delete, c.principal.account, c.region, c.params["prefix"])
    return {"registryId": c.principal.account, "repositoryCreationTemplate": template_shape(t)}


async def describe_templates(c: EcrCall) -> dict[str, Any]:
    p = c.params
    prefixes = p.get("prefixes") or None
    if prefixes is not None and (p.get("maxResults") is not None or p.get("nextToken") is not None):
        raise EcrError("InvalidParameterException", "maxResults and nextToken cannot be specified with prefixes")
    found = await _templates(c).describe(c.principal.account, c.region, prefixes)
    after = decode_token(c, 1)
    if after is not None:
        found = [t for t in found if t.prefix > after[0]]
    limit = p.get("maxResults") or 100
    out: dict[str, Any] = {"registryId": c.principal.account,
                           "repositoryCreationTemplates": [template_shape(t) for t in found[:limit]]}
    if len(found) > limit:
        out["nextToken"] = encode_token(c.op, (found[limit - 1].prefix,))
    return out


OPERATIONS: dict[str, Handler] = {
    "CreateRepositoryCreationTemplate": create_template,
    "UpdateRepositoryCreationTemplate": update_template,
    "DeleteRepositoryCreationTemplate": delete_template,
    "DescribeRepositoryCreationTemplates": describe_templates,
}
