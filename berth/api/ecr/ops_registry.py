"""ECR operations on the registry as a whole: auth tokens, policies, settings, DescribeRegistry."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError
from berth.api.ecr.hosts import registry_host
from berth.iam import tokens
from berth.iam.policy import PolicyError
from berth.iam.resources import ResourcePolicies
from berth.registry.model import Repository


def _parse(text: str, kind: str) -> None:
    try:
        ResourcePolicies.check(text, kind)  # type: ignore[arg-type]
    except PolicyError as e:
        raise EcrError("InvalidParameterException",
                       f"Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid policy text: {e}'"
                       ) from None


def proxy_endpoint(c: EcrCall, registry_id: str) -> str:
    """`<scheme>://<registryId>.dkr.ecr.<region>.<registry domain>[:port]`, the registry host the
    credential helpers (docker-credential-ecr-login) expect; the port only when not the scheme's default."""
    scheme = "https" if c.context.secure_transport else "http"
    return f"{scheme}://" + registry_host(c.host, c.context.secure_transport, registry_id, c.region, c.services.domain,
                                          c.services.default_account, c.services.default_region)


async def get_authorization_token(c: EcrCall) -> dict[str, Any]:
    token, expires = c.services.identity.issue_token(c.principal)
    ids = list(dict.fromkeys(c.params.get("registryIds") or [c.principal.account]))
    return {"authorizationData": [{"authorizationToken": tokens.basic_auth_token(token),
                                   "expiresAt": expires.timestamp(),
                                   "proxyEndpoint": proxy_endpoint(c, registry_id)} for registry_id in ids]}


async def describe_registry(c: EcrCall) -> dict[str, Any]:
    rules: dict[str, Any] = {"rules": []}
    if c.services.replication is not None:
        rules = (await c.services.replication.configuration(c.registry_id, c.region)).to_document()
    return {"registryId": c.registry_id, "replicationConfiguration": rules}


async def _repo(c: EcrCall) -> Repository:
    return await c.services.registry.repository(c.registry_id, c.region, c.params["repositoryName"])


async def set_repository_policy(c: EcrCall) -> dict[str, Any]:
    repo = await _repo(c)
    text = c.params["policyText"]
    _parse(text, "repository")
    if not c.params.get("force") and not await _keeps_access(c, text):
        raise EcrError("InvalidParameterException",
                       "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The repository policy "
                       "would prevent you from setting another policy in the future; use force to set it anyway'")
    await c.services.policies.set_repository_policy(repo.id, text)
    return {"registryId": c.registry_id, "repositoryName": repo.name, "policyText": text}


async def _keeps_access(c: EcrCall, text: str) -> bool:
    """Would the caller still be allowed ecr:SetRepositoryPolicy under the new policy? Asked of the one
    authorizer, with this request's own context, as if `text` were already the repository's policy."""
    context = replace(c.context, proposed_repository_policy=text)
    resource = c.repo_arn(c.params["repositoryName"])
    decision = await c.services.authorizer.authorize(c.principal, "ecr:SetRepositoryPolicy", resource, context)
    return decision.allowed


def _repository_policy(c: EcrCall, repo: Repository, text: str | None) -> dict[str, Any]:
    if text is None:
        raise EcrError("RepositoryPolicyNotFoundException",
                       f"Repository policy does not exist for the repository with name '{repo.name}' in the "
                       f"registry with id '{c.registry_id}'")
    return {"registryId": c.registry_id, "repositoryName": repo.name, "policyText": text}


async def get_repository_policy(c: EcrCall) -> dict[str, Any]:
    repo = await _repo(c)
    return _repository_policy(c, repo, await c.services.policies.repository_policy(repo.id))


async def delete_repository_policy(c: EcrCall) -> dict[str, Any]:
    repo = await _repo(c)
    return _repository_policy(c, repo, await c.services.policies.delete_repository_policy(repo.id))


async def put_registry_policy(c: EcrCall) -> dict[str, Any]:
    text = c.params["policyText"]
    _parse(text, "registry")
    await c.services.policies.put_registry_policy(c.principal.account, c.region, text)
    return {"registryId": c.principal.account, "policyText": text}


def _registry_policy(c: EcrCall, text: str | None) -> dict[str, Any]:
    if text is None:
        raise EcrError("RegistryPolicyNotFoundException",
                       f"Registry policy does not exist in the registry with id '{c.principal.account}'")
    return {"registryId": c.principal.account, "policyText": text}


async def get_registry_policy(c: EcrCall) -> dict[str, Any]:
    return _registry_policy(c, await c.services.policies.registry_policy(c.principal.account, c.region))


async def delete_registry_policy(c: EcrCall) -> dict[str, Any]:
    return _registry_policy(c, await c.services.policies.delete_registry_policy(c.principal.account, c.region))


async def get_account_setting(c: EcrCall) -> dict[str, Any]:
    name = c.params["name"]
    try:
        value = await c.services.policies.setting(c.principal.account, c.region, name)
    except ValueError as e:
        raise EcrError("InvalidParameterException", str(e)) from None
    return {"name": name, "value": value}


async def put_account_setting(c: EcrCall) -> dict[str, Any]:
    name, value = c.params["name"], c.params["value"]
    try:
        await c.services.policies.put_setting(c.principal.account, c.region, name, value)
    except ValueError as e:
        raise EcrError("InvalidParameterException", str(e)) from None
    return {"name": name, "value": value}


OPERATIONS: dict[str, Handler] = {
    "GetAuthorizationToken": get_authorization_token,
    "DescribeRegistry": describe_registry,
    "SetRepositoryPolicy": set_repository_policy,
    "GetRepositoryPolicy": get_repository_policy,
    "DeleteRepositoryPolicy": delete_repository_policy,
    "PutRegistryPolicy": put_registry_policy,
    "GetRegistryPolicy": get_registry_policy,
    "DeleteRegistryPolicy": delete_registry_policy,
    "GetAccountSetting": get_account_setting,
    "PutAccountSetting": put_account_setting,
}
