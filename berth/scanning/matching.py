"""Match an inventory against the vulnerability database: which OSV ecosystem each package belongs to, and
which affected entries name it at its version. Pure: the caller fetches the candidate rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth.db.scanning import AffectedRow
from berth.scanning import osv
from berth.scanning.model import OS_KINDS, Inventory, OsRelease, Package

RANK = {s: i for i, s in enumerate(osv.SEVERITIES)}
LANG_ECOSYSTEM = {"python": "PyPI", "npm": "npm", "go": "Go", "maven": "Maven", "cargo": "crates.io"}


def os_ecosystems(os: OsRelease | None, kind: str) -> list[str]:
    """OSV's ecosystem names for the image's distribution release: an advisory for another release never
    matches. Empty when the release is unknown (e.g. Debian testing has no VERSION_ID)."""
    if os is None or not os.version_id:
        return []
    if kind == "dpkg" and os.id == "debian":
        return [f"Debian:{os.version_id.split('.')[0]}"]
    if kind == "dpkg" and os.id == "ubuntu":
        return [f"Ubuntu:{os.version_id}", f"Ubuntu:{os.version_id}:LTS", f"Ubuntu:Pro:{os.version_id}:LTS"]
    if kind == "apk" and os.id == "alpine":
        return [f"Alpine:v{'.'.join(os.version_id.split('.')[:2])}"]
    if kind == "rpm" and os.id in ("rocky", "almalinux"):
        return [{"rocky": "Rocky Linux", "almalinux": "AlmaLinux"}[os.id] + ":" + os.version_id.split(".")[0]]
    return []


def lookups(inv: Inventory, enhanced: bool) -> list[tuple[Package, list[tuple[str, str, str]]]]:
    """Each package with the (ecosystem, name, version) keys it is looked up by."""
    out = []
    for p in inv.packages:
        if p.kind in OS_KINDS:
            name, version = (p.source or p.name), (p.source_version or p.version)
            keys = [(eco, name, version) for eco in os_ecosystems(inv.os, p.kind)]
        elif enhanced and p.kind in LANG_ECOSYSTEM:
            keys = [(LANG_ECOSYSTEM[p.kind], p.name, p.version)]
        else:
            keys = []
        if keys:
            out.append((p, keys))
    return out


def pairs(inv: Inventory, enhanced: bool) -> set[tuple[str, str]]:
    return {(eco, name) for _, keys in lookups(inv, enhanced) for eco, name, _ in keys}


def _affected(row: AffectedRow) -> osv.Affected:
    d = row.data
    return osv.Affected(row.ecosystem, row.name, tuple(d.get("ranges") or ()), tuple(d.get("versions") or ()),
                        d.get("severity"))


def display_name(record_id: str, aliases: Iterable[str]) -> str:
    """ECR names a finding by its CVE when it has one."""
    for a in [record_id, *aliases]:
        if a.startswith("CVE-"):
            return a
    return record_id


def find(inv: Inventory, rows: Iterable[AffectedRow], enhanced: bool) -> list[dict[str, Any]]:
    """The findings, worst first: one per (package, vulnerability), aliases (CVE, GHSA, DSA, PYSEC…) merged."""
    index: dict[tuple[str, str], list[AffectedRow]] = {}
    for r in rows:
        index.setdefault((r.ecosystem, r.name), []).append(r)
    findings: list[dict[str, Any]] = []
    for p, keys in lookups(inv, enhanced):
        hits: list[tuple[AffectedRow, str | None]] = []
        for eco, name, version in keys:
            for r in index.get((eco, name), ()):
                affected, fixed = osv.affects(_affected(r), version)
                if affected:
                    hits.append((r, fixed))
        hits.sort(key=lambda h: (RANK.get(h[0].severity, 99), h[0].record_id))
        clusters: list[set[str]] = []
        for r, fixed in hits:
            names = {r.record_id, *r.body.get("aliases", [])}
            if any(c & names for c in clusters):
                for c in clusters:
                    if c & names:
                        c |= names
                continue
            clusters.append(set(names))
            findings.append(_finding(p, r, fixed))
    findings.sort(key=lambda f: (RANK.get(f["severity"], 99), f["name"], f["package"]["name"], f["package"]["path"]))
    return findings


def _finding(p: Package, r: AffectedRow, fixed: str | None) -> dict[str, Any]:
    body = r.body
    aliases = list(body.get("aliases", []))
    refs = body.get("references") or []
    severity = r.severity
    if severity == "UNDEFINED" and r.data.get("severity"):
        severity = r.data["severity"]
    return {
        "name": display_name(r.record_id, aliases), "id": r.record_id, "aliases": aliases, "severity": severity,
        "score": r.score, "vector": body.get("vector"), "summary": body.get("summary", ""),
        "description": body.get("details") or body.get("summary", ""), "uri": refs[0] if refs else "",
        "references": refs[:10], "ecosystem": r.ecosystem, "os": p.kind in OS_KINDS, "fixedIn": fixed,
        "package": p.to_json(),
    }


def summary_counts(findings: Iterable[dict[str, Any]], enhanced: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in visible(findings, enhanced):
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    return counts


def visible(findings: Iterable[dict[str, Any]], enhanced: bool) -> list[dict[str, Any]]:
    """BASIC shows operating-system packages only; ENHANCED shows everything."""
    return [f for f in findings if enhanced or f["os"]]


def key(f: dict[str, Any]) -> tuple[str, str, str, str]:
    p = f["package"]
    return (f["id"], p["name"], p["version"], p["path"])
