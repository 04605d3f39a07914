"""ECR scanning operations: the registry scanning configuration, BatchGetRepositoryScanningConfiguration,
StartImageScan, DescribeImageScanFindings; and the scan fields of DescribeImages. The rules live in
berth.scanning.service; this translates shapes and errors."""

from __future__ import annotations

from typing import Any

from berth.api.ecr.app import EcrCall, Handler
from berth.api.ecr.errors import EcrError, translated
from berth.api.ecr.ops_images import repository, wire_id
from berth.api.ecr.paging import decode_token, encode_token
from berth.iam.authz import repository_arn
from berth.registry.errors import NameUnknown, RegistryError
from berth.registry.model import ImageId, ImageView, Repository
from berth.scanning import matching
from berth.scanning.errors import ScanError
from berth.scanning.service import ScanRow, ScanService

DEFAULT_PAGE = 100
ERRORS = {"LIMIT_EXCEEDED": "LimitExceededException", "SCAN_NOT_FOUND": "ScanNotFoundException",
          "UNSUPPORTED_IMAGE_TYPE": "UnsupportedImageTypeException", "INVALID_PARAMETER": "ValidationException",
          "SIGNING_CONFIGURATION_NOT_FOUND": "SigningConfigurationNotFoundException"}


def _service(c: EcrCall) -> ScanService:
    svc: ScanService | None = getattr(c.services, "scanning", None)
    if svc is None:
        raise EcrError("ValidationException", "Scanning is not enabled on this registry.")
    return svc


async def _image(c: EcrCall, repo: Repository) -> tuple[ImageView, dict[str, str]]:
    raw = c.params.get("imageId") or {}
    image_id = ImageId(raw.get("imageDigest"), raw.get("imageTag"))
    try:
        views = await c.services.images.describe(repo, [image_id])
    except RegistryError as e:
        if e.code != "MANIFEST_UNKNOWN":
            raise
        raise translated(e, f"The image with imageId {{imageDigest:'{image_id.digest}', imageTag:"
                            f"'{image_id.tag}'}} does not exist within the repository with name '{repo.name}' "
                            f"in the registry with id '{c.registry_id}'") from None
    view = views[0]
    return view, wire_id(ImageId(view.digest, image_id.tag))


def _config(scan_type: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scanType": scan_type, "rules": rules}


async def put_registry_scanning_configuration(c: EcrCall) -> dict[str, Any]:
    try:
        scan_type, rules = await _service(c).put_registry_config(c.registry_id, c.region, c.params.get("scanType"),
                                                                 c.params.get("rules"))
    except ScanError as e:
        raise translated(e, table=ERRORS) from None
    return {"registryScanningConfiguration": _config(scan_type, rules)}


async def get_registry_scanning_configuration(c: EcrCall) -> dict[str, Any]:
    scan_type, rules = await _service(c).registry_config(c.registry_id, c.region)
    return {"registryId": c.registry_id, "scanningConfiguration": _config(scan_type, rules)}


async def batch_get_repository_scanning_configuration(c: EcrCall) -> dict[str, Any]:
    svc = _service(c)
    configs, failures = [], []
    for name in dict.fromkeys(c.params["repositoryNames"]):
        try:
            repo = await c.services.registry.repository(c.registry_id, c.region, name)
        except NameUnknown:
            failures.append({"repositoryName": name, "failureCode": "REPOSITORY_NOT_FOUND",
                             "failureReason": "REPOSITORY_NOT_FOUND"})
            continue
        rs = await svc.repository_scanning(repo)
        configs.append({"repositoryArn": repository_arn(repo.region, repo.account_id, repo.name),
                        "repositoryName": repo.name, "scanOnPush": rs.scan_on_push, "scanFrequency": rs.frequency,
                        "appliedScanFilters": [dict(f) for f in rs.filters]})
    return {"scanningConfigurations": configs, "failures": failures}


def scan_status(row: ScanRow) -> dict[str, str]:
    return {"status": row.status, "description": row.description}


async def start_image_scan(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view, wire = await _image(c, repo)
    if view.status != "ACTIVE":  # ARCHIVED, or ACTIVATING on its way back: its layers are not readable
        raise EcrError("ImageArchivedException",
                       f"The image with imageId {{imageDigest:'{view.digest}'}} in the repository with name "
                       f"'{repo.name}' in the registry with id '{c.registry_id}' is archived ({view.status}); "
                       "restore it with UpdateImageStorageClass to scan it")
    try:
        row = await _service(c).start(repo, view.digest, view.media_type)
    except ScanError as e:
        raise translated(e, table=ERRORS) from None
    return {"registryId": c.registry_id, "repositoryName": repo.name, "imageId": wire,
            "imageScanStatus": scan_status(row)}


def _basic(f: dict[str, Any]) -> dict[str, Any]:
    p = f["package"]
    attrs = [{"key": "package_version", "value": p["version"]}, {"key": "package_name", "value": p["name"]}]
    if f.get("vector"):
        attrs += [{"key": "CVSS3_VECTOR", "value": f["vector"]}, {"key": "CVSS3_SCORE", "value": str(f["score"])}]
    if f.get("fixedIn"):
        attrs.append({"key": "fixed_in_version", "value": f["fixedIn"]})
    out = {"name": f["name"], "description": f["description"][:2000], "uri": f["uri"], "severity": f["severity"],
           "attributes": attrs}
    return out


def _enhanced(c: EcrCall, repo: Repository, view: ImageView, row: ScanRow, f: dict[str, Any]) -> dict[str, Any]:
    p = f["package"]
    at = row.completed_at or row.requested_at
    pkg: dict[str, Any] = {"name": p["name"], "version": p["version"], "filePath": "/" + p["path"],
                           "packageManager": _manager(p["kind"]), "sourceLayerHash": p.get("layer", "")}
    if f.get("fixedIn"):
        pkg["fixedInVersion"] = f["fixedIn"]
    details: dict[str, Any] = {
        "vulnerabilityId": f["name"], "source": f["ecosystem"], "sourceUrl": f["uri"],
        "referenceUrls": f.get("references", []), "relatedVulnerabilities": [a for a in [f["id"], *f["aliases"]]
                                                                              if a != f["name"]],
        "vendorSeverity": f["severity"], "vulnerablePackages": [pkg],
    }
    if f.get("vector"):
        details["cvss"] = [{"baseScore": f["score"], "scoringVector": f["vector"], "source": "OSV",
                            "version": f["vector"].split("/")[0].removeprefix("CVSS:")}]
    out: dict[str, Any] = {
        "awsAccountId": repo.account_id, "description": f["description"][:2000],
        "findingArn": f"arn:aws:inspector2:{repo.region}:{repo.account_id}:finding/"
                      f"{view.digest.split(':')[-1][:32]}{abs(hash(matching.key(f))) % 10**8:08d}",
        "firstObservedAt": at, "lastObservedAt": at, "updatedAt": at,
        "packageVulnerabilityDetails": details,
        "remediation": {"recommendation": {"text": f"Upgrade {p['name']} to {f['fixedIn']} or later."
                                           if f.get("fixedIn") else "None provided", "url": f["uri"]}},
        "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE",
                       "id": f"arn:aws:ecr:{repo.region}:{repo.account_id}:repository/{repo.name}/{view.digest}",
                       "details": {"awsEcrContainerImage": {"registry": repo.account_id, "repositoryName": repo.name,
                                                            "imageHash": view.digest, "imageTags": view.tags,
                                                            "pushedAt": view.pushed_at}}}],
        "severity": f["severity"], "status": "ACTIVE", "title": f"{f['name']} - {p['name']}",
        "type": "PACKAGE_VULNERABILITY", "fixAvailable": "YES" if f.get("fixedIn") else "NO",
    }
    if f.get("score") is not None:
        out["score"] = f["score"]
        out["scoreDetails"] = {"cvss": {"score": f["score"], "scoreSource": "OSV", "scoringVector": f["vector"],
                                        "version": f["vector"].split("/")[0].removeprefix("CVSS:"),
                                        "adjustments": []}}
    return out


def _manager(kind: str) -> str:
    return {"dpkg": "OS", "apk": "OS", "rpm": "OS", "python": "PYTHONPKG", "npm": "NODEPKG",
            "go": "GOBINARY", "maven": "JAR", "cargo": "CARGO"}.get(kind, "OS")


async def describe_image_scan_findings(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view, wire = await _image(c, repo)
    try:
        row, enhanced, source_updated = await _service(c).findings(repo, view.digest)
    except ScanError:
        raise EcrError("ScanNotFoundException",
                       f"Image scan does not exist for the image with '{{imageDigest:'{view.digest}', imageTag:"
                       f"'{wire.get('imageTag')}'}}' in the repository with name '{repo.name}' in the registry "
                       f"with id '{c.registry_id}'") from None
    out: dict[str, Any] = {"registryId": c.registry_id, "repositoryName": repo.name, "imageId": wire,
                           "imageScanStatus": scan_status(row)}
    if row.status not in ("COMPLETE", "UNSUPPORTED_IMAGE") or row.findings is None:
        return out
    findings = matching.visible(row.findings, enhanced)
    limit = c.params.get("maxResults") or DEFAULT_PAGE
    after = decode_token(c, 1)
    start = int(after[0]) if after and after[0].isdigit() else 0
    page = findings[start:start + limit]
    body: dict[str, Any] = {"findingSeverityCounts": matching.summary_counts(row.findings, enhanced)}
    if row.completed_at is not None:
        body["imageScanCompletedAt"] = row.completed_at
    if source_updated is not None:
        body["vulnerabilitySourceUpdatedAt"] = source_updated
    if enhanced:
        body["enhancedFindings"] = [_enhanced(c, repo, view, row, f) for f in page]
    else:
        body["findings"] = [_basic(f) for f in page]
    out["imageScanFindings"] = body
    if start + limit < len(findings):
        out["nextToken"] = encode_token(c.op, (str(start + limit),))
    return out


def scan_details(row: ScanRow | None, enhanced: bool, source_updated: float | None) -> dict[str, Any]:
    """imageScanStatus and imageScanFindingsSummary for DescribeImages."""
    if row is None:
        return {}
    out: dict[str, Any] = {"imageScanStatus": scan_status(row)}
    if row.status == "COMPLETE" and row.findings is not None:
        summary: dict[str, Any] = {"findingSeverityCounts": matching.summary_counts(row.findings, enhanced)}
        if row.completed_at is not None:
            summary["imageScanCompletedAt"] = row.completed_at
        if source_updated is not None:
            summary["vulnerabilitySourceUpdatedAt"] = source_updated
        out["imageScanFindingsSummary"] = summary
    return out


def _signing(c: EcrCall) -> Any:
    svc = getattr(c.services, "signing", None)
    if svc is None:
        raise EcrError("ValidationException", "Signing is not enabled on this registry.")
    return svc


async def put_signing_configuration(c: EcrCall) -> dict[str, Any]:
    try:
        rules = await _signing(c).put_config(c.registry_id, c.region, c.params["signingConfiguration"]["rules"])
    except ScanError as e:
        raise translated(e, table=ERRORS) from None
    return {"signingConfiguration": {"rules": rules}}


async def get_signing_configuration(c: EcrCall) -> dict[str, Any]:
    try:
        rules = await _signing(c).config(c.registry_id, c.region)
    except ScanError as e:
        raise translated(e, table=ERRORS) from None
    return {"registryId": c.registry_id, "signingConfiguration": {"rules": rules}}


async def delete_signing_configuration(c: EcrCall) -> dict[str, Any]:
    try:
        rules = await _signing(c).delete_config(c.registry_id, c.region)
    except ScanError as e:
        raise translated(e, table=ERRORS) from None
    return {"registryId": c.registry_id, "signingConfiguration": {"rules": rules}}


async def describe_image_signing_status(c: EcrCall) -> dict[str, Any]:
    repo = await repository(c)
    view, wire = await _image(c, repo)
    statuses = []
    for arn, status, code, reason in await _signing(c).statuses(repo, view.digest):
        item = {"signingProfileArn": arn, "status": status}
        if code:
            item["failureCode"] = code
        if reason:
            item["failureReason"] = reason
        statuses.append(item)
    return {"repositoryName": repo.name, "imageId": wire, "registryId": c.registry_id, "signingStatuses": statuses}


OPERATIONS: dict[str, Handler] = {
    "PutSigningConfiguration": put_signing_configuration,
    "GetSigningConfiguration": get_signing_configuration,
    "DeleteSigningConfiguration": delete_signing_configuration,
    "DescribeImageSigningStatus": describe_image_signing_status,
    "PutRegistryScanningConfiguration": put_registry_scanning_configuration,
    "GetRegistryScanningConfiguration": get_registry_scanning_configuration,
    "BatchGetRepositoryScanningConfiguration": batch_get_repository_scanning_configuration,
    "StartImageScan": start_image_scan,
    "DescribeImageScanFindings": describe_image_scan_findings,
}
