"""The registry scanning configuration's rules: which scan frequency applies to a repository."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

BASIC, ENHANCED = "BASIC", "ENHANCED"
SCAN_ON_PUSH, CONTINUOUS, MANUAL = "SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"
_STRENGTH = {MANUAL: 0, SCAN_ON_PUSH: 1, CONTINUOUS: 2}  # ECR: continuous wins over scan on push

IMAGE_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json")
IMAGE_CONFIGS = (None, "application/vnd.oci.image.config.v1+json",
                 "application/vnd.docker.container.image.v1+json")


def _matches(repository: str, f: Mapping[str, Any]) -> bool:
    # ECR's WILDCARD filters: '*' matches any run of characters; nothing else is special
    pattern = str(f.get("filter", ""))
    return fnmatch.fnmatchcase(repository, pattern.replace("[", "[[]").replace("?", "[?]"))


def applied(rules: Sequence[Mapping[str, Any]], repository: str) -> tuple[str, list[Mapping[str, Any]]]:
    """(frequency, the filters that applied) from the registry's rules; MANUAL when none applies."""
    best, filters = MANUAL, []
    for rule in rules:
        hits = [f for f in rule.get("repositoryFilters") or [] if _matches(repository, f)]
        freq = rule.get("scanFrequency", MANUAL)
        if hits and _STRENGTH.get(freq, 0) > _STRENGTH[best]:
            best, filters = freq, hits
    return best, filters


def frequency(scan_type: str, rules: Sequence[Mapping[str, Any]], repository: str,
              scan_on_push: bool) -> tuple[str, list[Mapping[str, Any]]]:
    """The frequency for one repository: the registry's rules when one applies, else the repository's own
    scanOnPush flag (PutImageScanningConfiguration)."""
    freq, filters = applied(rules, repository)
    if freq == MANUAL and scan_on_push:
        return SCAN_ON_PUSH, []
    return freq, filters


def scannable(media_type: str, artifact_type: str | None) -> bool:
    """An image manifest of a container image (not an index, a signature, an SBOM or another artifact)."""
    return media_type in IMAGE_MANIFESTS and artifact_type in IMAGE_CONFIGS


SIGNABLE = (*IMAGE_MANIFESTS, "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json")


def is_signature_tag(tag: str | None) -> bool:
    """cosign's attachment tags (signatures, attestations, SBOMs): never scanned or signed themselves."""
    return tag is not None and tag.startswith("sha256-") and tag.endswith((".sig", ".att", ".sbom"))


def signing_profiles(rules: Sequence[Mapping[str, Any]], repository: str) -> list[str]:
    """The signing profiles whose rules' filters match the repository."""
    out = []
    for rule in rules:
        if any(_matches(repository, f) for f in rule.get("repositoryFilters") or []):
            out.append(str(rule["signingProfileArn"]))
    return list(dict.fromkeys(out))
