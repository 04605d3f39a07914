"""ECR operations on repositories: create, describe, delete, settings and resource tags."""

from __future__ import annotations

from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.hosts import registry_host
from berth.api.ecr.paging import decode_token, encode_token
from berth.iam.authz import repository_arn
from berth.registry.model import Encryption, Mutability, Repository
from berth.registry.repositories import parse_repository_arn


def mutability_shape(m: Mutability) -> dict[str, Any]:
    out: dict[str, Any] = {"imageTagMutability": m.mode}
    if m.filters:
        out["imageTagMutabilityExclusionFilters"] = [{"filterType": f.kind, "filter": f.pattern} for f in m.filters]
    return out


def encryption_shape(e: Encryption) -> dict[str, str]:
    return {"encryptionType": e.kind, **({"kmsKey": e.kms_key} if e.kms_key else {})}


def repository_shape(c: EcrCall, repo: Repository) -> dict[str, Any]:
    """The model's `Repository` structure."""
    shape: dict[str, Any] = {
        "repositoryArn": repository_arn(repo.region, repo.account_id, repo.name),
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "repositoryUri": registry_host(c.host, c.context.secure_transport, repo.account_id, repo.region,
                                       c.services.domain, c.services.default_account,
                                       c.services.default_region) + f"/{repo.name}",
        "createdAt": repo.created_at,
        **mutability_shape(repo.mutability),
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
        "encryptionConfiguration": encryption_shape(repo.encryption),
    }
    return shape


async def create_repository(c: EcrCall) -> dict[str, Any]:
    p = c.params
    repo = await c.services.repositories.create(
        c.registry_id, c.region, p["repositoryName"], tags=p.get("tags"),
        mutability=p.get("imageTagMutability"), exclusion_filters=p.get("imageTagMutabilityExclusionFilters"),
        scan_on_push=bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        encryption=p.get("encryptionConfiguration"))
    return {"repository": repository_shape(c, repo)}


async def describe_repositories(c: EcrCall) -> dict[str, Any]:
    p = c.params
    after = decode_token(c, 1)
    repos, more = await c.services.repositories.describe(c.registry_id, c.region, p.get("repositoryNames"),
                                                         p.get("maxResults"), None if after is None else after[0])
    out: dict[str, Any] = {"repositories": [repository_shape(c, r) for r in repos]}
    if more:
        out["nextToken"] = encode_token(c.op, (repos[-1].name,))
    return out


async def delete_repository(c: EcrCall) -> dict[str, Any]:
    repo = await c.services.repositories.delete(c.registry_id, c.region, c.params["repositoryName"],
                                  bool(c.params.get("force", False)))
    return {"repository": repository_shape(c, repo)}


async def put_image_tag_mutability(c: EcrCall) -> dict[str, Any]:
    p = c.params
    repo = await c.services.repositories.set_tag_mutability(c.registry_id, c.region, p["repositoryName"],
                                              p["imageTagMutability"], p.get("imageTagMutabilityExclusionFilters"))
    return {"registryId": repo.account_id, "repositoryName": repo.name, **mutability_shape(repo.mutability)}


async def put_image_scanning_configuration(c: EcrCall) -> dict[str, Any]:
    p = c.params
    flag = bool(p["imageScanningConfiguration"].get("scanOnPush", False))
    repo = await c.services.repositories.set_scan_on_push(c.registry_id, c.region, p["repositoryName"], flag)
    return {"registryId": repo.account_id, "repositoryName": repo.name,
            "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push}}


async def _resource(c: EcrCall, action: str) -> tuple[str, str]:
    """(account, repository name) of the call's resourceArn, after authorizing `action` on it."""
    arn = c.params["resourceArn"]
    account, name = parse_repository_arn(arn, c.region)
    await c.allow(action, arn)
    return account, name


async def tag_resource(c: EcrCall) -> dict[str, Any]:
    account, name = await _resource(c, "ecr:TagResource")
    await c.services.repositories.tag(account, c.region, name, c.params["tags"])
    return {}


async def untag_resource(c: EcrCall) -> dict[str, Any]:
    account, name = await _resource(c, "ecr:UntagResource")
    await c.services.repositories.untag(account, c.region, name, c.params["tagKeys"])
    return {}


async def list_tags_for_resource(c: EcrCall) -> dict[str, Any]:
    account, name = await _resource(c, "ecr:ListTagsForResource")
    tags = await c.services.repositories.tags(account, c.region, name)
    return {"tags": [{"Key": k, "Value": v} for k, v in tags]}


OPERATIONS: dict[str, Handler] = {
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "PutImageTagMutability": put_image_tag_mutability,
    "PutImageScanningConfiguration": put_image_scanning_configuration,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}
