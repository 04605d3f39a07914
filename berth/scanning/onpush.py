"""The scan-on-push hook: `yield from` inside the push's own transaction (berth/registry/changes.py), so the
scan job exists if and only if the push committed. The scan itself runs later, in a job."""

from __future__ import annotations

from berth.db import scanning as qs
from berth.db.store import Txn
from berth.scanning import rules


def on_push(repo_id: int, account: str, region: str, name: str, scan_on_push: bool, digest: str,
            media_type: str, artifact_type: str | None, now: float) -> Txn[bool]:
    """Queue a scan of a newly pushed image when its repository scans on push; True if queued."""
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
