"""OSV records: reading one (a dict from JSON), the affected-range rules, severity as ECR levels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth.scanning import versions
from berth.scanning.versions import InvalidVersion

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")  # ECR's levels, worst first
_WORDS = {"CRITICAL": "CRITICAL", "HIGH": "HIGH", "IMPORTANT": "HIGH", "MODERATE": "MEDIUM", "MEDIUM": "MEDIUM",
          "LOW": "LOW", "NEGLIGIBLE": "INFORMATIONAL", "UNIMPORTANT": "INFORMATIONAL", "INFORMATIONAL": "INFORMATIONAL"}


class BadRecord(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # OSV's, with its release: "Debian:12", "PyPI"
    name: str
    ranges: tuple[dict[str, Any], ...]
    versions: tuple[str, ...]
    severity: str | None  # from ecosystem_specific / database_specific, when the record gives one there


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    modified: str
    summary: str
    details: str
    aliases: tuple[str, ...]
    severity: str  # an ECR level
    score: float | None
    vector: str | None
    references: tuple[str, ...]
    affected: tuple[Affected, ...]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cvss_score(vector: str) -> float | None:
    try:
        if vector.startswith("CVSS:4"):
            from cvss import CVSS4

            return float(CVSS4(vector).base_score)
        if vector.startswith("CVSS:3"):
            from cvss import CVSS3

            return float(CVSS3(vector).scores()[0])
        from cvss import CVSS2

        return float(CVSS2(vector).scores()[0])
    except Exception:  # a malformed vector: no score, not a failed import
        return None


def level(score: float) -> str:
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0.0:
        return "LOW"
    return "INFORMATIONAL"


def _word(value: Any) -> str | None:
    return _WORDS.get(value.upper()) if isinstance(value, str) else None


def _specific_severity(*blocks: Any) -> str | None:
    for block in blocks:
        if isinstance(block, Mapping):
            for k in ("severity", "urgency"):
                if (w := _word(block.get(k))) is not None:
                    return w
    return None


def parse(doc: Any) -> Record:
    if not isinstance(doc, dict):
        raise BadRecord("an OSV record is a JSON object")
    rid, modified = doc.get("id"), doc.get("modified")
    if not isinstance(rid, str) or not rid or len(rid) > 200:
        raise BadRecord("missing or bad 'id'")
    if not isinstance(modified, str):
        raise BadRecord(f"{rid}: missing 'modified'")
    try:
        parse_time(modified)
    except ValueError:
        raise BadRecord(f"{rid}: bad 'modified' time {modified!r}") from None
    score = vector = None
    for s in doc.get("severity") or []:
        if isinstance(s, dict) and isinstance(s.get("score"), str) and str(s.get("type", "")).startswith("CVSS"):
            got = cvss_score(s["score"])
            if got is not None and (score is None or got > score):
                score, vector = got, s["score"]
    affected = []
    for a in doc.get("affected") or []:
        if not isinstance(a, dict) or not isinstance(a.get("package"), dict):
            continue
        pkg = a["package"]
        eco, name = pkg.get("ecosystem"), pkg.get("name")
        if not isinstance(eco, str) or not isinstance(name, str):
            continue
        ranges = tuple(r for r in a.get("ranges") or [] if isinstance(r, dict) and isinstance(r.get("events"), list))
        vs = tuple(v for v in a.get("versions") or [] if isinstance(v, str))
        affected.append(Affected(eco, name, ranges, vs,
                                 _specific_severity(a.get("ecosystem_specific"), a.get("database_specific"))))
    sev = level(score) if score is not None else \
        (_specific_severity(doc.get("database_specific")) or
         next((a.severity for a in affected if a.severity), None) or "UNDEFINED")
    aliases = tuple(x for x in (doc.get("aliases") or []) + (doc.get("upstream") or []) if isinstance(x, str))
    refs = tuple(r["url"] for r in doc.get("references") or [] if isinstance(r, dict) and isinstance(r.get("url"), str))
    return Record(rid, modified, str(doc.get("summary") or ""), str(doc.get("details") or ""), aliases, sev,
                  score, vector, refs, tuple(affected))


def _events(ecosystem: str, events: Iterable[Any]) -> list[tuple[Any, str, str]]:
    """(version key, kind, version) sorted by version; "introduced: 0" sorts first."""
    out: list[tuple[Any, str, str]] = []
    for e in events:
        if not isinstance(e, dict) or not e:
            continue
        kind, value = next(iter(e.items()))
        if kind not in ("introduced", "fixed", "last_affected", "limit") or not isinstance(value, str):
            continue
        if kind == "introduced" and value == "0":
            out.append((None, kind, value))
            continue
        try:
            out.append((versions.key(ecosystem, value), kind, value))
        except InvalidVersion:
            continue
    first = [e for e in out if e[0] is None]
    rest: list[tuple[Any, str, str]] = sorted((e for e in out if e[0] is not None), key=lambda e: e[0])
    return first + rest


def affects(a: Affected, version: str) -> tuple[bool, str | None]:
    """(is `version` affected, the fixed version to report) under OSV's rules: explicit `versions`, then
    ECOSYSTEM/SEMVER ranges of introduced / fixed / last_affected events (GIT ranges need commits: skipped)."""
    if version in a.versions:
        return True, _fixed_after(a, version)
    try:
        v = versions.key(a.ecosystem, version)
    except InvalidVersion:
        return False, None
    for r in a.ranges:
        if r.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        hit = False
        for k, kind, _ in _events(a.ecosystem, r["events"]):
            if kind == "introduced" and (k is None or not v < k):
                hit = True
            elif kind == "fixed" and k is not None and not v < k:
                hit = False
            elif kind == "last_affected" and k is not None and k < v:
                hit = False
        if hit:
            return True, _fixed_after(a, version)
    return False, None


def _fixed_after(a: Affected, version: str) -> str | None:
    try:
        v = versions.key(a.ecosystem, version)
    except InvalidVersion:
        v = None
    fixes: list[tuple[Any, str]] = []
    for r in a.ranges:
        for k, kind, value in _events(a.ecosystem, r.get("events") or []):
            if kind == "fixed" and k is not None and (v is None or v < k):
                fixes.append((k, value))
    return min(fixes, key=lambda f: f[0])[1] if fixes else None


def names(record_id: str, aliases: Sequence[str]) -> list[str]:
    return [record_id, *aliases]
