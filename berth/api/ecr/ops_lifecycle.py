"""ECR lifecycle operations: the five lifecycle-policy ops, UpdateImageStorageClass and the three pull-time
exclusion ops. The rules live in berth.lifecycle; this translates shapes and errors."""

from __future__ import annotations

import functools
import re
from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError, translated
from berth.api.ecr.ops_images import repository, wire_id
from berth.api.ecr.paging import decode_token, encode_token
from berth.lifecycle.policy import PolicyInvalid
from berth.lifecycle.service import Action, LifecycleError, LifecycleService
from berth.registry.errors import ManifestUnknown
from berth.registry.model import ImageId

PREVIEW_PAGE = 100  # GetLifecyclePolicyPreview without maxResults
EXCLUSIONS_PAGE = 100
_PRINCIPAL = re.compile(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/:-]+")

# each domain refusal -> its ECR exception
ERRORS = {
    "POLICY_NOT_FOUND": "LifecyclePolicyNotFoundException",
    "PREVIEW_NOT_FOUND": "LifecyclePolicyPreviewNotFoundException",
    "PREVIEW_IN_PROGRESS": "LifecyclePolicyPreviewInProgressException",
    "IMAGE_NOT_FOUND": "ImageNotFoundException",
    "STORAGE_CLASS_UPDATE_REFUSED": "ImageStorageClassUpdateNotSupportedException",
    "EXCLUSION_EXISTS": "ExclusionAlreadyExistsException",
    "EXCLUSION_NOT_FOUND": "ExclusionNotFoundException",
    "TOO_MANY_EXCLUSIONS": "LimitExceededException",
}


def invalid_policy(reason: str) -> EcrError:
    return EcrError("InvalidParameterException", "Invalid parameter at 'LifecyclePolicyText' failed to satisfy "
                                                 f"constraint: 'Lifecycle policy validation failure: {reason}'")


def _translating(fn: Handler) -> Handler:
    @functools.wraps(fn)
    async def run(c: EcrCall) -> dict[str, Any]:
        try:
            return await fn(c)
        except PolicyInvalid as e:
            raise invalid_policy(e.reason) from None
        except LifecycleError as e:
            raise translated(e, table=ERRORS) from None
    return run


def _service(c: EcrCall) -> LifecycleService:
    service = c.services.lifecycle
    if service is None:
        raise EcrError("ServerException", f"{c.op}: the lifecycle service is not configured")
    return service


def _repo_shape(c: EcrCall, name: str) -> dict[str, Any]:
    return {"registryId": c.registry_id, "repositoryName": name}


@_translating
async def put_lifecycle_policy(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    text = await _service(c).put_policy(repo, c.params["lifecyclePolicyText"])
    return {**_repo_shape(c, repo.name), "lifecyclePolicyText": text}


def _policy_shape(c: EcrCall, name: str, text: str, evaluated: float | None) -> dict[str, Any]:
    out = {**_repo_shape(c, name), "lifecyclePolicyText": text}
    if evaluated is not None:
        out["lastEvaluatedAt"] = evaluated
    return out


@_translating
async def get_lifecycle_policy(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view = await _service(c).get_policy(repo)
    return _policy_shape(c, repo.name, view.text, view.last_evaluated_at)


@_translating
async def delete_lifecycle_policy(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view = await _service(c).delete_policy(repo)
    return _policy_shape(c, repo.name, view.text, view.last_evaluated_at)


@_translating
async def start_lifecycle_policy_preview(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view = await _service(c).start_preview(repo, c.params.get("lifecyclePolicyText"))
    return {**_repo_shape(c, repo.name), "lifecyclePolicyText": view.text, "status": view.status}


def _result(a: Action) -> dict[str, Any]:
    action: dict[str, Any] = {"type": a.kind}
    if a.target_storage_class is not None:
        action["targetStorageClass"] = a.target_storage_class
    out: dict[str, Any] = {"imageDigest": a.digest, "imagePushedAt": a.pushed_at, "action": action,
                           "appliedRulePriority": a.rule_priority, "storageClass": a.storage_class}
    if a.tags:
        out["imageTags"] = list(a.tags)
    return out


def _summary(actions: list[Action]) -> dict[str, Any]:
    transitions = sum(a.kind == "TRANSITION" for a in actions)
    return {"expiringImageTotalCount": sum(a.kind == "EXPIRE" for a in actions),
            "transitioningImageTotalCounts": [{"targetStorageClass": "ARCHIVE", "imageTotalCount": transitions}]
            if transitions else []}


def _selected(c: EcrCall, actions: list[Action]) -> list[Action]:
    ids = [ImageId(i.get("imageDigest"), i.get("imageTag")) for i in c.params.get("imageIds") or []]
    if ids:
        actions = [a for a in actions if any((i.digest is None or i.digest == a.digest)
                                             and (i.tag is None or i.tag in a.tags) for i in ids)]
    status = (c.params.get("filter") or {}).get("tagStatus", "ANY")
    if status == "TAGGED":
        actions = [a for a in actions if a.tags]
    elif status == "UNTAGGED":
        actions = [a for a in actions if not a.tags]
    return actions


@_translating
async def get_lifecycle_policy_preview(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    if c.params.get("imageIds") and ("maxResults" in c.params or "nextToken" in c.params):
        raise EcrError("InvalidParameterException",
                       "Invalid parameter at 'imageIds' failed to satisfy constraint: 'maxResults and nextToken "
                       "cannot be used when you specify images with imageIds'")
    view = await _service(c).preview(repo)
    out: dict[str, Any] = {**_repo_shape(c, repo.name), "lifecyclePolicyText": view.text, "status": view.status}
    if view.actions is None:
        out["previewResults"] = []
        return out
    selected = _selected(c, view.actions)
    after = decode_token(c, 1)
    start = 0
    if after is not None:
        if not after[0].isdigit():
            raise EcrError("InvalidParameterException", "Invalid parameter at 'nextToken' failed to satisfy "
                                                        "constraint: 'Invalid pagination token'")
        start = int(after[0])
    limit = c.params.get("maxResults") or PREVIEW_PAGE
    page = selected[start:start + limit]
    out["previewResults"] = [_result(a) for a in page]
    if start + limit < len(selected):
        out["nextToken"] = encode_token(c.op, (str(start + limit),))
    out["summary"] = _summary(view.actions)
    return out


@_translating
async def update_image_storage_class(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    raw = c.params["imageId"]
    image_id = ImageId(raw.get("imageDigest"), raw.get("imageTag"))
    try:
        [view] = await c.services.images.describe(repo, [image_id])
    except ManifestUnknown:
        raise EcrError("ImageNotFoundException", f"The image with imageId {{imageDigest:'{image_id.digest}', "
                                                 f"imageTag:'{image_id.tag}'}} does not exist within the repository "
                                                 f"with name '{repo.name}' in the registry with id "
                                                 f"'{c.registry_id}'") from None
    status = await _service(c).update_storage_class(repo, view.digest, c.params["targetStorageClass"])
    return {**_repo_shape(c, repo.name), "imageId": wire_id(ImageId(view.digest, image_id.tag)),
            "imageStatus": status}


def _principal(c: EcrCall) -> str:
    arn = c.params["principalArn"]
    if not _PRINCIPAL.fullmatch(arn):
        raise EcrError("InvalidParameterException", f"Invalid parameter at 'principalArn' failed to satisfy "
                                                    f"constraint: 'must be an IAM principal ARN' ({arn!r})")
    return str(arn)


@_translating
async def register_pull_time_update_exclusion(c: EcrCall) -> dict[str, Any]:
    arn = _principal(c)
    created = await _service(c).add_exclusion(c.registry_id, arn)
    return {"principalArn": arn, "createdAt": created}


@_translating
async def deregister_pull_time_update_exclusion(c: EcrCall) -> dict[str, Any]:
    arn = _principal(c)
    await _service(c).remove_exclusion(c.registry_id, arn)
    return {"principalArn": arn}


@_translating
async def list_pull_time_update_exclusions(c: EcrCall) -> dict[str, Any]:
    rows = await _service(c).exclusions(c.registry_id)
    after = decode_token(c, 1)
    if after is not None:
        rows = [r for r in rows if r[0] > after[0]]
    limit = c.params.get("maxResults") or EXCLUSIONS_PAGE
    out: dict[str, Any] = {"pullTimeUpdateExclusions": [arn for arn, _ in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(c.op, (rows[limit - 1][0],))
    return out


OPERATIONS: dict[str, Handler] = {
    "PutLifecyclePolicy": put_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
    "DeleteLifecyclePolicy": delete_lifecycle_policy,
    "StartLifecyclePolicyPreview": start_lifecycle_policy_preview,
    "GetLifecyclePolicyPreview": get_lifecycle_policy_preview,
    "UpdateImageStorageClass": update_image_storage_class,
    "RegisterPullTimeUpdateExclusion": register_pull_time_update_exclusion,
    "DeregisterPullTimeUpdateExclusion": deregister_pull_time_update_exclusion,
    "ListPullTimeUpdateExclusions": list_pull_time_update_exclusions,
}
