"""ECR layer operations: InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload,
BatchCheckLayerAvailability, GetDownloadUrlForLayer. Uploads are the OCI face's upload sessions."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError, translated
from berth.api.ecr.ops_images import repository
from berth.registry.errors import RegistryError
from berth.registry.images import PART_SIZE

DOWNLOAD_URL_TTL = timedelta(hours=1)  # a bearer URL: keep it short-lived
_ECR_HOST = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.(.+?)(:\d+)?")


def _upload_not_found(c: EcrCall) -> EcrError:
    return EcrError("UploadNotFoundException",
                    f"Upload with id '{c.params['uploadId']}' is not found in the repository with name "
                    f"'{c.params['repositoryName']}' in the registry with id '{c.registry_id}'")


async def initiate_layer_upload(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    upload_id = await c.services.images.start_upload(repo)
    return {"uploadId": upload_id, "partSize": PART_SIZE}


async def upload_layer_part(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    upload_id = c.params["uploadId"]
    data = base64.b64decode(c.params["layerPartBlob"])
    try:
        size = await c.services.images.upload_part(repo, upload_id, c.params["partFirstByte"],
                                                             c.params["partLastByte"], data)
    except RegistryError as e:
        if e.code == "BLOB_UPLOAD_UNKNOWN":
            raise _upload_not_found(c) from None
        if e.code in ("LAYER_PART_INVALID", "SIZE_INVALID", "UPLOAD_OUT_OF_ORDER"):
            received = e.extra.get("received", e.extra.get("size"))
            extra: dict[str, Any] = {"registryId": c.registry_id, "repositoryName": repo.name,
                                     "uploadId": upload_id}
            if received:  # the last byte already stored; absent while the upload is still empty
                extra["lastValidByteReceived"] = received - 1
            raise translated(e, **extra) from None
        raise
    return {"registryId": c.registry_id, "repositoryName": repo.name, "uploadId": upload_id,
            "lastByteReceived": size - 1}


async def complete_layer_upload(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    digests = c.params["layerDigests"]
    if len(digests) != 1:
        raise EcrError("InvalidParameterException",
                       "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'A layer upload is "
                       "verified against exactly one digest'")
    try:
        digest = await c.services.images.complete_upload(repo, c.params["uploadId"], digests[0])
    except RegistryError as e:
        if e.code == "BLOB_UPLOAD_UNKNOWN":
            raise _upload_not_found(c) from None
        raise
    return {"registryId": c.registry_id, "repositoryName": repo.name, "uploadId": c.params["uploadId"],
            "layerDigest": digest}


async def batch_check_layer_availability(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    layers, failures = await c.services.images.layers(repo, c.params["layerDigests"])
    out = []
    for layer in layers:
        entry: dict[str, Any] = {"layerDigest": layer.digest,
                                 "layerAvailability": "AVAILABLE" if layer.available else "UNAVAILABLE"}
        if layer.size is not None:
            entry["layerSize"] = layer.size
        if layer.media_type is not None:
            entry["mediaType"] = layer.media_type
        out.append(entry)
    return {"layers": out, "failures": [{"layerDigest": f.digest, "failureCode": f.code, "failureReason": f.reason}
                                        for f in failures]}


def _registry_host(c: EcrCall) -> str:
    """The host the /v2 face maps to the call's registry: the request's own host, or, when that names
    (or, bare, implies) another registry, `<registryId>.dkr.ecr.<region>.<domain>` on the same port."""
    m = _ECR_HOST.fullmatch(c.host)
    if m is not None:
        return f"{c.registry_id}.dkr.ecr.{c.region}.{m.group(3)}{m.group(4) or ''}"
    if c.registry_id == c.principal.account:
        return c.host
    port = c.host.rsplit(":", 1)[1] if c.host.count(":") == 1 else ""
    return f"{c.registry_id}.dkr.ecr.{c.region}.{c.services.domain}" + (f":{port}" if port else "")


async def get_download_url_for_layer(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    digest = c.params["layerDigest"]
    try:
        await c.services.images.layer_for_download(repo, digest)
    except RegistryError as e:
        if e.code == "BLOB_UNKNOWN":  # LayersNotFoundException, with the message ECR gives
            raise EcrError("LayersNotFoundException", e.message) from None
        raise
    # Like a presigned S3 URL: a signature over exactly this host, repository, blob and expiry.
    host, path = _registry_host(c), f"/v2/{repo.name}/blobs/{digest}"
    query = c.services.identity.download_query(c.principal, host, path, DOWNLOAD_URL_TTL)
    scheme = "https" if c.context.secure_transport else "http"
    return {"downloadUrl": f"{scheme}://{host}{path}?{query}", "layerDigest": digest}


OPERATIONS: dict[str, Handler] = {
    "InitiateLayerUpload": initiate_layer_upload,
    "UploadLayerPart": upload_layer_part,
    "CompleteLayerUpload": complete_layer_upload,
    "BatchCheckLayerAvailability": batch_check_layer_availability,
    "GetDownloadUrlForLayer": get_download_url_for_layer,
}
