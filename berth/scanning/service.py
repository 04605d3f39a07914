"""Scanning's rules: the registry scanning configuration, StartImageScan's quota, the scan job (read the
layers once, keep the inventory), re-matching stored inventories when the vulnerability database changes,
and the findings as stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.db import registry as qr
from berth.db import scanning as qs
from berth.db.events import Event, append_event
from berth.db.jobs import Job
from berth.db.scanning import ScanRow
from berth.db.store import Backend, Txn
from berth.registry.model import Repository
from berth.registry.service import RegistryService
from berth.scanning import matching, rules
from berth.scanning.errors import BadScanningConfiguration, ScanNotFound, ScanQuotaExceeded, UnsupportedImageType
from berth.scanning.inventory import read_inventory
from berth.scanning.layers import LayerFormatError
from berth.scanning.model import Inventory
from berth.storage import BlobStore, StorageUnavailable

log = logging.getLogger("berth.scanning")
BASIC_QUOTA_SECONDS = 24 * 3600.0  # ECR: a basic scan of one image once per 24 hours
SUPPORTED_OS = ("debian", "ubuntu", "alpine", "rocky", "almalinux")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
INDEXES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
LAYER_HINTS = ("tar", "rootfs.diff")


@dataclass(frozen=True, slots=True)
class RepoScanning:
    repository: Repository
    scan_on_push: bool
    frequency: str
    filters: list[Mapping[str, Any]]


def _counts(findings: Sequence[dict[str, Any]], enhanced: bool) -> dict[str, int]:
    return matching.summary_counts(findings, enhanced)


def _finished(repo_id: int, account: str, region: str, name: str, digest: str, status: str, description: str,
              now: float, generation: int, inventory: dict[str, Any] | None,
              findings: list[dict[str, Any]] | None, enhanced: bool) -> Txn[bool]:
    ok = yield from qs.finish_scan(repo_id, digest, status, description, now, generation, inventory, findings)
    if ok:
        yield from append_event(Event.IMAGE_SCANNED, account, region, name, now, digest,
                                payload={"status": status, "findingSeverityCounts": _counts(findings or [], enhanced)})
    return ok


def _rematched(s: qs.Stored, generation: int, findings: list[dict[str, Any]], added: list[str],
               removed: list[str], now: float) -> Txn[None]:
    yield from qs.update_findings(s.repository_id, s.digest, generation, findings, now)
    if added or removed:
        yield from append_event(Event.SCAN_FINDINGS_CHANGED, s.account, s.region, s.repository, now, s.digest,
                                payload={"added": added, "removed": removed, "generation": generation})


NO_VULNDB = ("The image's packages were read, but no vulnerability data has been imported into this registry "
             "(berth vulndb import), so its findings are unavailable. They are matched when data is imported.")
SBOM_TAG = "berth:sbom"  # a repository resource tag: "push" attaches each scanned image's SBOM as a referrer
SBOM_ARTIFACT = "application/vnd.cyclonedx+json"


class ScanService:
    def __init__(self, db: Backend, blobs: BlobStore, clock: Callable[[], float] = time.time,
                 registry: RegistryService | None = None) -> None:
        self.db = db
        self.blobs = blobs
        self.clock = clock
        self.registry = registry  # set in the workers: pushes SBOM referrers

    # configuration

    async def registry_config(self, account: str, region: str) -> tuple[str, list[dict[str, Any]]]:
        return await self.db.read(qs.get_registry_config, account, region)

    async def put_registry_config(self, account: str, region: str, scan_type: str | None,
                                  rule_list: Sequence[Mapping[str, Any]] | None) -> tuple[str, list[dict[str, Any]]]:
        scan_type = scan_type or rules.BASIC
        if scan_type not in (rules.BASIC, rules.ENHANCED):
            raise BadScanningConfiguration(f"scanType must be BASIC or ENHANCED, not {scan_type!r}")
        cleaned = []
        for rule in rule_list or []:
            freq = rule.get("scanFrequency")
            if freq not in (rules.SCAN_ON_PUSH, rules.CONTINUOUS, rules.MANUAL):
                raise BadScanningConfiguration(f"Invalid scan frequency {freq!r}")
            filters = [{"filter": str(f["filter"]), "filterType": str(f.get("filterType", "WILDCARD"))}
                       for f in rule.get("repositoryFilters") or []]
            if not filters:
                raise BadScanningConfiguration("Each scanning rule needs at least one repository filter")
            cleaned.append({"scanFrequency": freq, "repositoryFilters": filters})
        await self.db.write(qs.put_registry_config, account, region, scan_type, cleaned)
        return scan_type, cleaned

    async def repository_scanning(self, repo: Repository) -> RepoScanning:
        scan_type, rule_list = await self.registry_config(repo.account_id, repo.region)
        freq, filters = rules.frequency(scan_type, rule_list, repo.name, repo.scan_on_push)
        return RepoScanning(repo, freq != rules.MANUAL and (repo.scan_on_push or freq == rules.SCAN_ON_PUSH),
                            freq, filters)

    # scans

    async def start(self, repo: Repository, digest: str, media_type: str) -> ScanRow:
        """StartImageScan: queue a scan (IN_PROGRESS at once); ScanQuotaExceeded within the basic quota."""
        if media_type in INDEXES:
            raise UnsupportedImageType("The image is a manifest list or image index, which cannot be scanned. "
                                       "Scan each image it lists instead.")
        scan_type, rule_list = await self.registry_config(repo.account_id, repo.region)
        freq, _ = rules.frequency(scan_type, rule_list, repo.name, repo.scan_on_push)
        quota = BASIC_QUOTA_SECONDS if scan_type == rules.BASIC else None
        row = await self.db.write(qs.request_scan, repo.id, repo.account_id, repo.region, repo.name, digest,
                                  scan_type, freq == rules.CONTINUOUS, self.clock(), quota)
        if row is None:
            raise ScanQuotaExceeded("The scan quota per image has been exceeded. Wait and try again.")
        return row

    async def findings(self, repo: Repository, digest: str) -> tuple[ScanRow, bool, float | None]:
        """(the scan row, enhanced, when the vulnerability data last changed); ScanNotFound when never scanned."""
        row = await self.db.read(qs.get_scan, repo.id, digest, False)
        if row is None:
            raise ScanNotFound("scan not found")
        full = await self.db.read(qs.get_scan, repo.id, digest, True)
        assert full is not None
        scan_type, _ = await self.registry_config(repo.account_id, repo.region)
        st = await self.db.read(qs.status)
        return full, scan_type == rules.ENHANCED, st.updated_at

    async def summaries(self, repo: Repository, digests: Sequence[str]) -> tuple[dict[str, ScanRow], bool,
                                                                                  float | None]:
        if not digests:
            return {}, False, None
        rows = await self.db.read(qs.scan_summaries, repo.id, list(digests))
        if not rows:
            return {}, False, None
        scan_type, _ = await self.registry_config(repo.account_id, repo.region)
        st = await self.db.read(qs.status)
        return rows, scan_type == rules.ENHANCED, st.updated_at

    # jobs

    async def run_scan(self, job: Job) -> None:
        p = job.payload
        repo_id, digest = int(p["repositoryId"]), str(p["digest"])
        account, region, name = p["account"], p["region"], p["repository"]
        scan_type, _ = await self.registry_config(account, region)
        enhanced = scan_type == rules.ENHANCED

        async def done(status: str, description: str, inv: Inventory | None = None,
                       found: list[dict[str, Any]] | None = None, generation: int = 0) -> None:
            await self.db.write(_finished, repo_id, account, region, name, digest, status, description, self.clock(),
                                generation, None if inv is None else inv.to_json(), found, enhanced)

        m = await self.db.read(qr.manifest_by_digest, repo_id, digest)
        if m is None:
            return  # deleted since: nothing to scan, nothing to record
        try:
            doc = json.loads(m.body)
        except ValueError:
            await done("FAILED", "The image manifest is not valid JSON.")
            return
        config = (doc.get("config") or {}).get("mediaType") if isinstance(doc, dict) else None
        if m.media_type not in rules.IMAGE_MANIFESTS or config not in rules.IMAGE_CONFIGS:
            await done("UNSUPPORTED_IMAGE", "UnsupportedImageError: only container images can be scanned, "
                                            "not indexes or artifacts.")
            return
        layer_digests = [d["digest"] for d in doc.get("layers") or []
                         if isinstance(d, dict) and any(h in str(d.get("mediaType", "")) for h in LAYER_HINTS)
                         and "nondistributable" not in str(d.get("mediaType", "")) and "foreign" not in
                         str(d.get("mediaType", ""))]
        try:
            inv = await asyncio.to_thread(read_inventory, layer_digests, self.blobs.open)
        except StorageUnavailable:
            raise  # the storage may come back: the job is retried
        except (LayerFormatError, FileNotFoundError) as e:
            await done("FAILED", f"The image could not be read: {e}")
            return
        except Exception as e:  # a reader's bug must not leave the scan IN_PROGRESS for ever
            log.exception("scanning %s@%s failed", name, digest)
            await done("FAILED", f"The scan failed: {type(e).__name__}")
            return
        generation = await self.db.read(qs.generation)
        unsupported = not enhanced and (inv.os is None or inv.os.id not in SUPPORTED_OS)
        if generation == 0 and not unsupported:
            # ECR's FINDINGS_UNAVAILABLE: the image was read, but there is nothing to match it against (an
            # air-gapped registry before its first `berth vulndb import`); that import's re-match completes it
            await done("FINDINGS_UNAVAILABLE", NO_VULNDB, inv, None, generation)
            await self._push_sbom(account, region, name, digest, m.media_type, len(m.body), inv)
            return
        rows = await self.db.read(qs.affected_for, matching.pairs(inv, True))
        found = matching.find(inv, rows, enhanced=True)  # all kept; BASIC shows only the OS findings
        if unsupported:
            await done("UNSUPPORTED_IMAGE", "UnsupportedImageError: The operating system and/or package manager "
                                            "are not supported.", inv, found, generation)
            return
        await done("COMPLETE", "The scan was completed successfully.", inv, found, generation)
        await self._push_sbom(account, region, name, digest, m.media_type, len(m.body), inv)
        log.info("scanned %s@%s: %d packages, %d findings, %d layer bytes", name, digest, len(inv.packages),
                 len(found), inv.bytes_read)

    async def rematch_job(self, job: Job) -> None:
        await self.rematch()

    async def rematch(self) -> int:
        """CONTINUOUS_SCAN: match every stored inventory behind the current vulndb generation again (no layer is
        read), and every FINDINGS_UNAVAILABLE one (read before any data was imported) for the first time;
        findings that appear or disappear are events. Returns the number of images whose findings changed."""
        generation = await self.db.read(qs.generation)
        after: tuple[int, str] = (0, "")
        changed = 0
        while True:
            page = await self.db.read(qs.continuous_scans, generation, after, 100)
            if not page:
                return changed
            for s in page:
                after = (s.repository_id, s.digest)
                row = await self.db.read(qs.get_scan, s.repository_id, s.digest, True)
                if row is None or row.inventory is None:
                    continue
                inv = Inventory.from_json(row.inventory)
                rows = await self.db.read(qs.affected_for, matching.pairs(inv, True))
                found = matching.find(inv, rows, enhanced=True)
                old = {matching.key(f) for f in row.findings or []}
                new = {matching.key(f) for f in found}
                added = sorted({k[0] for k in new - old})
                removed = sorted({k[0] for k in old - new})
                if added or removed:
                    changed += 1
                await self.db.write(_rematched, s, generation, found, added, removed, self.clock())

    async def _push_sbom(self, account: str, region: str, name: str, digest: str, media_type: str, size: int,
                         inv: Inventory) -> None:
        """With the repository tag berth:sbom=push, store the CycloneDX SBOM as an OCI artifact whose subject is
        the image (found by the referrers API and ListImageReferrers). Idempotent: same bytes, same digest."""
        if self.registry is None:
            return
        tags = await self.db.read(qr.repository_tags, account, region, name)
        if tags.get(SBOM_TAG) != "push":
            return
        from berth.scanning.sbom import cyclonedx_json

        repo = await self.registry.repository(account, region, name)
        doc = cyclonedx_json(inv, name, digest, stable=True).encode()
        empty = b"{}"
        for blob in (doc, empty):
            d = "sha256:" + hashlib.sha256(blob).hexdigest()

            async def rid(repo: Repository = repo) -> int:
                return repo.id

            await self.registry.uploads.put(rid, d, _once(blob), len(blob))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM_ARTIFACT,
                    "config": {"mediaType": OCI_EMPTY, "digest": "sha256:" + hashlib.sha256(empty).hexdigest(),
                               "size": 2, "data": "e30="},
                    "layers": [{"mediaType": SBOM_ARTIFACT, "digest": "sha256:" + hashlib.sha256(doc).hexdigest(),
                                "size": len(doc)}],
                    "subject": {"mediaType": media_type, "digest": digest, "size": size},
                    "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z",
                                    "dev.berth.sbom.format": "CycloneDX 1.5"}}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        ref = "sha256:" + hashlib.sha256(body).hexdigest()
        await self.registry.put_manifest(repo, ref, body, OCI_MANIFEST)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
