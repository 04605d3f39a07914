"""The registry's value objects: what the services hand to the edges.

Decoded and typed: no storage encodings (JSON in text columns, 0/1 flags) and no wire shapes (the
edges render these in OCI or AWS form). Rows, decoded by the store, become these in
`Repository.from_row` and in the services (RegistryService, RepositoryAdmin, Images), at their
boundary; the image-view objects are built by berth/registry/images.py.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.db.registry import RepoRow

MUTABLE, IMMUTABLE = "MUTABLE", "IMMUTABLE"
IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION = "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"


@dataclass(frozen=True, slots=True)
class TagFilter:
    """An exclusion filter of tag mutability: `kind` is ECR's filterType (only WILDCARD today)."""

    kind: str
    pattern: str

    def matches(self, tag: str) -> bool:
        return fnmatch.fnmatchcase(tag, self.pattern)


@dataclass(frozen=True, slots=True)
class Mutability:
    """Tag mutability: ECR's four modes; the filters matter only with the *_WITH_EXCLUSION modes."""

    mode: str = MUTABLE
    filters: tuple[TagFilter, ...] = ()

    def is_immutable(self, tag: str) -> bool:
        if self.mode == MUTABLE:
            return False
        if self.mode == IMMUTABLE:
            return True
        matched = any(f.matches(tag) for f in self.filters)
        if self.mode == IMMUTABLE_WITH_EXCLUSION:
            return not matched
        if self.mode == MUTABLE_WITH_EXCLUSION:
            return matched
        raise ValueError(f"unknown tag mutability {self.mode!r}")


@dataclass(frozen=True, slots=True)
class Encryption:
    kind: str = "AES256"  # AES256, KMS or KMS_DSSE
    kms_key: str | None = None


@dataclass(frozen=True, slots=True)
class Repository:
    id: int  # the store's handle, opaque to the edges (they pass it back to the upload sessions)
    account_id: str
    region: str
    name: str
    created_at: float
    mutability: Mutability
    scan_on_push: bool
    encryption: Encryption

    @classmethod
    def from_row(cls, row: RepoRow) -> Repository:
        enc = row.encryption_configuration  # the store decodes its columns
        return cls(row.id, row.account_id, row.region, row.name, row.created_at,
                   Mutability(row.tag_mutability, tuple(TagFilter(f.get("filterType", "WILDCARD"), f.get("filter", ""))
                                                        for f in row.exclusion_filters)),
                   bool(row.scan_on_push), Encryption(enc.get("encryptionType", "AES256"), enc.get("kmsKey")))


def filter_dicts(filters: tuple[TagFilter, ...]) -> list[dict[str, str]]:
    """The filters as the store takes them (it encodes them)."""
    return [{"filterType": f.kind, "filter": f.pattern} for f in filters]


def encryption_dict(e: Encryption) -> dict[str, str]:
    return {"encryptionType": e.kind, **({"kmsKey": e.kms_key} if e.kms_key else {})}


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose subject is another manifest (the referrers API's data, for both faces)."""

    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str] | None


# The ECR image view (berth/registry/images.py)

@dataclass(frozen=True, slots=True)
class ImageId:
    digest: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ImageFailure:
    image_id: ImageId
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImageView:
    """What DescribeImages says about one image."""

    digest: str
    tags: list[str]
    size: int
    pushed_at: float
    last_pulled_at: float | None
    media_type: str
    artifact_media_type: str | None
    subject: str | None
    status: str = "ACTIVE"  # ACTIVE | ARCHIVED | ACTIVATING (the archive storage class)
    archived_at: float | None = None
    activated_at: float | None = None


@dataclass(frozen=True, slots=True)
class LayerInfo:
    digest: str
    available: bool
    size: int | None = None
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class LayerFailure:
    digest: str
    code: str
    reason: str
