"""ECR operations on images: ListImages, DescribeImages, BatchGetImage, BatchDeleteImage, PutImage,
ListImageReferrers. The rules live in berth.registry.images; this translates shapes and errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError, translated
from berth.api.ecr.paging import decode_token, encode_token
from berth.registry.errors import Denied, NameUnknown, RegistryError
from berth.registry.model import ImageFailure, ImageId, ImageView, Referrer, Repository

DEFAULT_PAGE = 100  # ListImages / DescribeImages without maxResults
DEFAULT_REFERRERS_PAGE = 20  # ListImageReferrers without maxResults
INACTIVE = ("ARCHIVED", "ACTIVATING")  # referrers are never archived on their own: these filters select none



async def repository(c: EcrCall) -> Repository:
    name = c.params["repositoryName"]
    try:
        return await c.services.registry.repository(c.registry_id, c.region, name)
    except NameUnknown as e:
        raise translated(e, f"The repository with name '{name}' does not exist in the registry with id "
                            f"'{c.registry_id}'") from None


def wire_id(image_id: ImageId) -> dict[str, str]:
    """The model's ImageIdentifier."""
    out = {}
    if image_id.digest is not None:
        out["imageDigest"] = image_id.digest
    if image_id.tag is not None:
        out["imageTag"] = image_id.tag
    return out


def image_ids(c: EcrCall) -> list[ImageId]:
    return [ImageId(i.get("imageDigest"), i.get("imageTag")) for i in c.params.get("imageIds") or []]


def failure(f: ImageFailure) -> dict[str, Any]:
    return {"imageId": wire_id(f.image_id), "failureCode": f.code, "failureReason": f.reason}


def _status_filter(c: EcrCall) -> tuple[str, str]:
    """(tagStatus, imageStatus) from the request's filter; without one, only ACTIVE images (the model's rule)."""
    f = c.params.get("filter") or {}
    return f.get("tagStatus", "ANY"), f.get("imageStatus", "ACTIVE")


async def list_images(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    tag_status, image_status = _status_filter(c)
    limit = c.params.get("maxResults") or DEFAULT_PAGE
    after = decode_token(c, 2) or ["", ""]
    rows = await c.services.images.list_ids(repo, tag_status, (after[0], after[1]), limit + 1, image_status)
    out: dict[str, Any] = {"imageIds": [wire_id(ImageId(d, t)) for d, t in rows[:limit]]}
    if len(rows) > limit:
        d, t = rows[limit - 1]
        out["nextToken"] = encode_token(c.op, (d, t or ""))
    return out


async def _scan_fields(c: EcrCall, repo: Repository, views: list[ImageView]) -> dict[str, dict[str, Any]]:
    """digest -> imageScanStatus / imageScanFindingsSummary (berth.api.ecr.ops_scanning)."""
    svc = getattr(c.services, "scanning", None)
    if svc is None or not views:
        return {}
    from berth.api.ecr.ops_scanning import scan_details

    rows, enhanced, updated = await svc.summaries(repo, [v.digest for v in views])
    return {d: scan_details(row, enhanced, updated) for d, row in rows.items()}


def detail(c: EcrCall, repo: Repository, v: ImageView, scan: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"registryId": c.registry_id, "repositoryName": repo.name, "imageDigest": v.digest}
    if v.tags:
        out["imageTags"] = v.tags
    out["imageSizeInBytes"] = v.size
    out["imagePushedAt"] = v.pushed_at
    out["imageManifestMediaType"] = v.media_type
    if v.artifact_media_type:
        out["artifactMediaType"] = v.artifact_media_type
    if v.last_pulled_at is not None:
        out["lastRecordedPullTime"] = v.last_pulled_at
    if v.subject:
        out["subjectManifestDigest"] = v.subject
    out["imageStatus"] = v.status
    if v.archived_at is not None:
        out["lastArchivedAt"] = v.archived_at
    if v.activated_at is not None:
        out["lastActivatedAt"] = v.activated_at
    if scan:
        out.update(scan)
    return out


async def describe_images(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    images = c.services.images
    ids = image_ids(c)
    if ids:
        if "maxResults" in c.params or "nextToken" in c.params:
            raise EcrError("InvalidParameterException",
                           "Invalid parameter at 'imageIds' failed to satisfy constraint: 'maxResults and "
                           "nextToken cannot be used when you specify images with imageIds'")
        try:
            views = await images.describe(repo, ids)
        except RegistryError as e:
            if e.code != "MANIFEST_UNKNOWN":
                raise
            missing: ImageId = e.detail
            raise translated(e, f"The image with imageId {{imageDigest:'{missing.digest}', "
                                f"imageTag:'{missing.tag}'}} does not exist within the repository with name "
                                f"'{repo.name}' in the registry with id '{c.registry_id}'") from None
        scans = await _scan_fields(c, repo, views)
        return {"imageDetails": [detail(c, repo, v, scans.get(v.digest)) for v in views]}
    tag_status, image_status = _status_filter(c)
    limit = c.params.get("maxResults") or DEFAULT_PAGE
    after = decode_token(c, 1) or [""]
    views = await images.list_views(repo, tag_status, after[0], limit + 1, image_status)
    scans = await _scan_fields(c, repo, views[:limit])
    out: dict[str, Any] = {"imageDetails": [detail(c, repo, v, scans.get(v.digest)) for v in views[:limit]]}
    if len(views) > limit:
        out["nextToken"] = encode_token(c.op, (views[limit - 1].digest,))
    return out


def importer(c: EcrCall, name: str) -> Callable[[bool], Awaitable[None]]:
    """A pull-through cache miss's authorization: ECR's actions for it, as on /v2 (Denied, a domain error, so
    that the cache may answer what it holds instead)."""
    async def may_import(creating: bool) -> None:
        for action in ("ecr:BatchImportUpstreamImage",) + (("ecr:CreateRepository",) if creating else ()):
            try:
                await c.allow(action, c.repo_arn(name))
            except EcrError as e:
                raise Denied(e.message) from None

    return may_import


async def batch_get_image(c: EcrCall) -> dict[str, Any]:
    name = c.params["repositoryName"]
    may_import = importer(c, name)
    try:
        found, failures = await c.services.images.pull(c.registry_id, c.region, name, image_ids(c),
                                                       c.params.get("acceptedMediaTypes"), c.principal.arn,
                                                       may_import)
    except NameUnknown as e:
        raise translated(e, f"The repository with name '{name}' does not exist in the registry with id "
                            f"'{c.registry_id}'") from None
    images = [{"registryId": c.registry_id, "repositoryName": name, "imageId": wire_id(image_id),
               "imageManifest": m.body.decode("utf-8", errors="replace"), "imageManifestMediaType": m.media_type}
              for image_id, m in found]
    return {"images": images, "failures": [failure(f) for f in failures]}


async def batch_delete_image(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    deleted, failures = await c.services.images.delete(repo, image_ids(c))
    return {"imageIds": [wire_id(i) for i in deleted], "failures": [failure(f) for f in failures]}


async def put_image(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    body = c.params["imageManifest"].encode("utf-8")
    tag = c.params.get("imageTag")
    try:
        m = await c.services.images.put(repo, body, c.params.get("imageManifestMediaType"), tag,
                                                  c.params.get("imageDigest"))
    except RegistryError as e:
        if e.code == "MANIFEST_BLOB_UNKNOWN":
            missing = (e.detail or {}).get("digest")
            raise translated(e, f"Layers with digests '[{missing}]' required for pushing image into repository "
                                f"with name '{repo.name}' in the registry with id '{c.registry_id}' do not exist"
                             ) from None
        if e.code == "TAG_IMMUTABLE":
            raise translated(e, f"The image tag '{tag}' already exists in the '{repo.name}' repository and cannot "
                                f"be overwritten because the tag is immutable.") from None
        if e.code in ("MANIFEST_INVALID", "MANIFEST_TOO_LARGE", "UNSUPPORTED"):
            message = f"Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{e.message}'"
            raise translated(e, message) from None
        raise
    return {"image": {"registryId": c.registry_id, "repositoryName": repo.name,
                      "imageId": wire_id(ImageId(m.digest, tag)), "imageManifest": c.params["imageManifest"],
                      "imageManifestMediaType": m.media_type}}


async def list_image_referrers(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    await c.allow("ecr:BatchGetImage", c.repo_arn(repo.name))  # the permission the model says it needs
    f = c.params.get("filter") or {}
    limit = c.params.get("maxResults") or DEFAULT_REFERRERS_PAGE
    after = decode_token(c, 1) or [""]
    subject = c.params["subjectId"]["imageDigest"]
    entries = [] if f.get("artifactStatus", "ACTIVE") in INACTIVE else await c.services.images.referrers(
        repo, subject, f.get("artifactTypes") or None, after[0], limit + 1, importer(c, repo.name))
    out: dict[str, Any] = {"referrers": [referrer_shape(r) for r in entries[:limit]]}
    if len(entries) > limit:
        out["nextToken"] = encode_token(c.op, (entries[limit - 1].digest,))
    return out


def referrer_shape(r: Referrer) -> dict[str, Any]:
    """The model's ImageReferrer."""
    out: dict[str, Any] = {"digest": r.digest, "mediaType": r.media_type}
    if r.artifact_type:
        out["artifactType"] = r.artifact_type
    out["size"] = r.size
    if r.annotations:
        out["annotations"] = r.annotations
    out["artifactStatus"] = "ACTIVE"
    return out


OPERATIONS: dict[str, Handler] = {
    "ListImages": list_images,
    "DescribeImages": describe_images,
    "BatchGetImage": batch_get_image,
    "BatchDeleteImage": batch_delete_image,
    "PutImage": put_image,
    "ListImageReferrers": list_image_referrers,
}
