"""ECR pull-through cache rules: Create/Describe/Update/Delete/ValidatePullThroughCacheRule."""

from __future__ import annotations

from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError
from berth.api.ecr.paging import decode_token, encode_token
from berth.replication.pullthrough_rules import PullThroughRules, Rule, RuleError


def rule_shape(r: Rule) -> dict[str, Any]:
    shape: dict[str, Any] = {"ecrRepositoryPrefix": r.prefix, "upstreamRegistryUrl": r.upstream_url,
                             "createdAt": r.created_at, "registryId": r.account,
                             "upstreamRepositoryPrefix": r.upstream_prefix, "updatedAt": r.updated_at}
    if r.upstream_registry:
        shape["upstreamRegistry"] = r.upstream_registry
    if r.credential_arn:
        shape["credentialArn"] = r.credential_arn
    if r.custom_role_arn:
        shape["customRoleArn"] = r.custom_role_arn
    return shape


def _rules(c: EcrCall) -> PullThroughRules:
    rules = c.services.pull_through
    if rules is None:
        raise EcrError("ValidationException", "the pull-through cache is not configured")
    return rules


async def _run(fn: Any, *args: Any) -> Any:
    try:
        return await fn(*args)
    except RuleError as e:
        raise EcrError(e.kind, e.message) from None


async def create_rule(c: EcrCall) -> dict[str, Any]:
    r = await _run(_rules(c).create, c.registry_id, c.region, c.params)
    shape = rule_shape(r)
    shape.pop("updatedAt")
    return shape


async def describe_rules(c: EcrCall) -> dict[str, Any]:
    p = c.params
    found = await _run(_rules(c).describe, c.registry_id, c.region, p.get("ecrRepositoryPrefixes"))
    after = decode_token(c, 1)
    if after is not None:
        found = [r for r in found if r.prefix > after[0]]
    limit = p.get("maxResults") or 100
    out: dict[str, Any] = {"pullThroughCacheRules": [rule_shape(r) for r in found[:limit]]}
    if len(found) > limit:
        out["nextToken"] = encode_token(c.op, (found[limit - 1].prefix,))
    return out


async def update_rule(c: EcrCall) -> dict[str, Any]:
    r = await _run(_rules(c).update, c.registry_id, c.region, c.params)
    return {k: v for k, v in rule_shape(r).items()
            if k in ("ecrRepositoryPrefix", "registryId", "updatedAt", "credentialArn", "customRoleArn",
                     "upstreamRepositoryPrefix")}


async def delete_rule(c: EcrCall) -> dict[str, Any]:
    r = await _run(_rules(c).delete, c.registry_id, c.region, c.params["ecrRepositoryPrefix"])
    shape = rule_shape(r)
    shape.pop("updatedAt")
    shape.pop("upstreamRegistry", None)
    return shape


async def validate_rule(c: EcrCall) -> dict[str, Any]:
    r, failure = await _run(_rules(c).validate, c.registry_id, c.region, c.params["ecrRepositoryPrefix"])
    out = {k: v for k, v in rule_shape(r).items()
           if k in ("ecrRepositoryPrefix", "registryId", "upstreamRegistryUrl", "credentialArn", "customRoleArn",
                    "upstreamRepositoryPrefix")}
    out["isValid"] = failure is None
    if failure is not None:
        out["failure"] = failure
    return out


OPERATIONS: dict[str, Handler] = {
    "CreatePullThroughCacheRule": create_rule,
    "DescribePullThroughCacheRules": describe_rules,
    "UpdatePullThroughCacheRule": update_rule,
    "DeletePullThroughCacheRule": delete_rule,
    "ValidatePullThroughCacheRule": validate_rule,
}
