"""ECR's replication operations: the configuration, the status per image and destination, back-fills."""

from __future__ import annotations

from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError
from berth.api.ecr.paging import decode_token, encode_token
from berth.registry.model import ImageId
from berth.replication.rules import ConfigurationInvalid, Destination
from berth.replication.service import ReplicationService

LIST_DEFAULT = 25  # ListReplicationBackfills without maxResults
RESULTS_DEFAULT = 100
TERMINAL = ("COMPLETE", "FAILED", "STOPPED")


def _service(c: EcrCall) -> ReplicationService:
    service = c.services.replication
    if service is None:  # wired in app.py; a guard, not a path
        raise EcrError("ServerException", "replication is not wired")
    return service


def _destination(d: Destination) -> dict[str, str]:
    return {"region": d.region, "registryId": d.registry_id}


async def put_replication_configuration(c: EcrCall) -> dict[str, Any]:
    try:
        config = await _service(c).put_configuration(c.principal.account, c.region,
                                                     c.params["replicationConfiguration"])
    except ConfigurationInvalid as e:
        raise EcrError("InvalidParameterException", str(e)) from None
    return {"replicationConfiguration": config.to_document()}


async def describe_image_replication_status(c: EcrCall) -> dict[str, Any]:
    name = c.params["repositoryName"]
    repo = await c.services.registry.repository(c.registry_id, c.region, name)
    wanted = c.params["imageId"]
    image_id = ImageId(wanted.get("imageDigest"), wanted.get("imageTag"))
    views = await c.services.images.describe(repo, [image_id])
    digest = views[0].digest
    out_id = {"imageDigest": digest, **({"imageTag": image_id.tag} if image_id.tag else {})}
    rows = await _service(c).statuses(repo, digest)
    return {"repositoryName": name, "imageId": out_id,
            "replicationStatuses": [{"region": r.dest_region, "registryId": r.dest_account, "status": r.status,
                                     **({"failureCode": r.failure_code} if r.failure_code else {})}
                                    for r in rows]}


def _progress(row: Any) -> dict[str, Any] | None:
    if row.status == "PREPARING" or (row.status == "STOPPED" and row.total == 0 and row.ended_at is None):
        return None
    return {"totalReplicationCount": row.total, "completedReplicationCount": row.completed,
            "failedReplicationCount": row.failed, "failureCodes": list(row.codes)}


def _summary(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"replicationBackfillId": row.id,
                           "destination": {"region": row.dest_region, "registryId": row.dest_account},
                           "status": row.status, "startedAt": row.started_at}
    if row.failure_code:
        out["failureCode"] = row.failure_code
    progress = _progress(row)
    if progress is not None:
        out["progress"] = progress
    if row.ended_at is not None:
        out["endedAt"] = row.ended_at
    return out


async def start_replication_backfill(c: EcrCall) -> dict[str, Any]:
    service = _service(c)
    raw = c.params["destination"]
    dest = Destination(raw["region"], raw["registryId"])
    config = await service.configuration(c.registry_id, c.region)
    if dest not in config.all_destinations():
        raise EcrError("InvalidParameterException",
                       f"Invalid parameter at 'destination' failed to satisfy constraint: 'The destination "
                       f"{dest.region}/{dest.registry_id} is not in the registry's replication configuration'")
    running, row = await service.start_backfill(c.registry_id, c.region, dest)
    if running is not None:
        raise EcrError("ReplicationBackfillInProgressException",
                       f"A replication backfill ({running}) to {dest.region}/{dest.registry_id} is already in "
                       "progress")
    return {"replicationBackfillId": row.id, "registryId": c.registry_id, "destination": _destination(dest),
            "status": row.status, "startedAt": row.started_at}


def _not_found(c: EcrCall, backfill_id: str) -> EcrError:
    return EcrError("ReplicationBackfillNotFoundException",
                    f"The replication backfill with id '{backfill_id}' does not exist in the registry with id "
                    f"'{c.registry_id}'")


async def stop_replication_backfill(c: EcrCall) -> dict[str, Any]:
    service = _service(c)
    backfill_id = c.params["replicationBackfillId"]
    row = await service.backfill(c.registry_id, c.region, backfill_id)
    if row is None:
        raise _not_found(c, backfill_id)
    if row.status not in ("PREPARING", "IN_PROGRESS"):
        raise EcrError("ReplicationBackfillInvalidStatusException",
                       f"The replication backfill with id '{backfill_id}' is {row.status} and cannot be stopped")
    row = await service.stop_backfill(c.registry_id, c.region, backfill_id)
    assert row is not None
    return {"registryId": c.registry_id, "replicationBackfillId": row.id,
            "destination": {"region": row.dest_region, "registryId": row.dest_account}, "status": row.status,
            "startedAt": row.started_at}


async def list_replication_backfills(c: EcrCall) -> dict[str, Any]:
    limit = c.params.get("maxResults") or LIST_DEFAULT
    after = decode_token(c, 2)
    rows = await _service(c).backfills(c.registry_id, c.region, None if after is None else (float(after[0]), after[1]),
                                       limit + 1)
    out: dict[str, Any] = {"registryId": c.registry_id, "backfills": [_summary(r) for r in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        out["nextToken"] = encode_token(c.op, [repr(last.started_at), last.id])
    return out


async def describe_replication_backfill_results(c: EcrCall) -> dict[str, Any]:
    service = _service(c)
    backfill_id = c.params["replicationBackfillId"]
    row = await service.backfill(c.registry_id, c.region, backfill_id)
    if row is None:
        raise _not_found(c, backfill_id)
    out: dict[str, Any] = {"registryId": c.registry_id, **_summary(row)}
    out.pop("failureCode", None)
    if row.failure_code:
        out["failureCode"] = row.failure_code
    if row.status in TERMINAL:
        limit = c.params.get("maxResults") or RESULTS_DEFAULT
        after = decode_token(c, 2) or ["", ""]
        items = await service.backfill_items(backfill_id, c.params.get("resultStatusFilter"), (after[0], after[1]),
                                             limit + 1)
        out["results"] = [{"repositoryName": i.repository,
                           "imageId": {"imageDigest": i.digest, **({"imageTag": i.tag} if i.tag else {})},
                           "status": "FAILED" if i.status == "FAILED" else "COMPLETE",
                           **({"failureCode": i.failure_code} if i.failure_code else {})}
                          for i in items[:limit] if i.status != "IN_PROGRESS"]
        if len(items) > limit:
            out["nextToken"] = encode_token(c.op, [items[limit - 1].repository, items[limit - 1].digest])
    return out


OPERATIONS: dict[str, Handler] = {
    "PutReplicationConfiguration": put_replication_configuration,
    "DescribeImageReplicationStatus": describe_image_replication_status,
    "StartReplicationBackfill": start_replication_backfill,
    "StopReplicationBackfill": stop_replication_backfill,
    "ListReplicationBackfills": list_replication_backfills,
    "DescribeReplicationBackfillResults": describe_replication_backfill_results,
}
