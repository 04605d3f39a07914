"""The scan-on-push hook: `yield from` inside the push's own transaction (berth/registry/changes.py), so the
scan job exists if and only if the push committed. The scan itself runs later, in a job."""

from __future__ import annotations

from berth.db import scanning as qs
from berth.db.store import Txn
from berth.scanning import rules


def on_push(repo_id: int, account: str, region: str, name: str, scan_on_push: bool, digest: str,
            media_type: str, artifact_type: str | None, tag: str | None, now: float) -> Txn[bool]:
    """Queue the scan of a newly pushed image when its repository scans on push, and its signing when a
    signing rule selects the repository; True if a scan was queued."""
    if rules.is_signature_tag(tag):
        return False
    if media_type in rules.SIGNABLE and (artifact_type in rules.IMAGE_CONFIGS or media_type not in
                                         rules.IMAGE_MANIFESTS):
        signing = yield from qs.get_signing_config(account, region)
        profiles = rules.signing_profiles(signing or [], name)
        if profiles:
            signed = yield from qs.signing_statuses(repo_id, digest)
            if not signed:
                yield from qs.request_signing(repo_id, account, region, name, digest, profiles, now)
    if not rules.scannable(media_type, artifact_type):
        return False
    scan_type, rule_list = yield from qs.get_registry_config(account, region)
    freq, _ = rules.frequency(scan_type, rule_list, name, scan_on_push)
    if freq == rules.MANUAL:
        return False
    existing = yield from qs.get_scan(repo_id, digest, with_data=False)
    if existing is not None and existing.status in ("COMPLETE", "IN_PROGRESS"):
        return False  # the same image pushed again (or under a new tag): already scanned
    got = yield from qs.request_scan(repo_id, account, region, name, digest, scan_type, freq == rules.CONTINUOUS,
                                     now, None)
    return got is not None
