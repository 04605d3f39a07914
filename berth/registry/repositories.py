"""Repository administration, ECR's rules: creation settings, listing, deletion, tag mutability,
scanning flag and resource tags. Shared by every face that manages repositories.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Sequence

from berth.db import repositories as q
from berth.db.repositories import RepoOutcome
from berth.db.store import Backend
from berth.registry import changes
from berth.registry.errors import (
    NameUnknown,
    ParameterInvalid,
    RegistryError,
    RepositoryExists,
    RepositoryNotEmpty,
    TagParameterInvalid,
    TooManyTags,
)
from berth.registry.model import Encryption, Mutability, Repository, TagFilter, encryption_dict, filter_dicts
from berth.registry.names import NAME_RE, check_name

MAX_RESOURCE_TAGS = 50  # TooManyTagsException: "a maximum of 50 tags can be applied to a repository"
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
DEFAULT_PAGE = 100  # DescribeRepositories without maxResults: up to 100 and a nextToken
MUTABILITIES = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
WITH_EXCLUSION = ("IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
# Tag keys and values: Unicode letters, digits and spaces, and _ . : / = + - @ (AWS tagging rules).
_TAG_PUNCTUATION = set("_.:/=+-@")
_FILTER_RE = re.compile(r"[0-9a-zA-Z._*-]{1,128}")







def _invalid(where: str, constraint: str) -> RegistryError:
    return ParameterInvalid(f"Invalid parameter at '{where}' failed to satisfy constraint: '{constraint}'")


def not_found(account: str, name: str) -> RegistryError:
    return NameUnknown(f"The repository with name '{name}' does not exist in the registry with id '{account}'",
                       detail={"name": name})


def check_mutability(mode: str | None, filters: Sequence[dict[str, str]] | None) -> Mutability:
    """ECR's rule: exclusion filters go with the *_WITH_EXCLUSION modes, and only with them."""
    mode = mode or "MUTABLE"
    if mode not in MUTABILITIES:
        raise _invalid("imageTagMutability", f"Member must satisfy enum value set: [{', '.join(MUTABILITIES)}]")
    parsed: list[TagFilter] = []
    for f in filters or ():
        ftype, value = f.get("filterType", ""), f.get("filter", "")
        if ftype != "WILDCARD" or not _FILTER_RE.fullmatch(value):
            raise _invalid("imageTagMutabilityExclusionFilters",
                           f"Invalid image tag mutability exclusion filter {ftype}:{value!r}")
        if TagFilter(ftype, value) not in parsed:
            parsed.append(TagFilter(ftype, value))
    if mode in WITH_EXCLUSION and not parsed:
        raise _invalid("imageTagMutabilityExclusionFilters",
                       f"imageTagMutabilityExclusionFilters must be specified when imageTagMutability is {mode}")
    if mode not in WITH_EXCLUSION and parsed:
        raise _invalid("imageTagMutabilityExclusionFilters",
                       f"imageTagMutabilityExclusionFilters can only be specified when imageTagMutability is "
                       f"IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {mode}")
    if len(parsed) > 5:
        raise _invalid("imageTagMutabilityExclusionFilters", "Member must have length less than or equal to 5")
    return Mutability(mode, tuple(parsed))


def check_encryption(config: dict[str, str] | None) -> Encryption:
    """The encryption configuration as recorded: AES256 by default; a KMS key only with the KMS types."""
    if not config:
        return Encryption()
    kind, key = config.get("encryptionType"), config.get("kmsKey")
    if kind not in ENCRYPTION_TYPES:
        raise _invalid("encryptionConfiguration.encryptionType",
                       f"Member must satisfy enum value set: [{', '.join(ENCRYPTION_TYPES)}]")
    if kind == "AES256":
        if key is not None:
            raise _invalid("encryptionConfiguration.kmsKey",
                           "A KMS key can only be specified when the encryption type is KMS or KMS_DSSE")
        return Encryption(kind)
    return Encryption(kind, key or None)


def _tag_text_ok(text: str) -> bool:
    return all(c.isalnum() or unicodedata.category(c).startswith("Z") or c in _TAG_PUNCTUATION for c in text)


def check_tag_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_TAG_KEY:
        raise TagParameterInvalid(f"Tag keys must be between 1 and {MAX_TAG_KEY} characters long; got {len(key)}")
    if key.lower().startswith("aws:"):
        raise TagParameterInvalid(f"Tag key '{key}' is invalid: the prefix 'aws:' is reserved for AWS use")
    if not _tag_text_ok(key):
        raise TagParameterInvalid(f"Tag key '{key}' contains characters that are not allowed; use letters, "
                                  "digits, spaces and _ . : / = + - @")
    return key


def check_tags(tags: Sequence[dict[str, str]] | None) -> list[tuple[str, str]]:
    """Resource tags as (key, value) pairs, each key once (the last value given wins)."""
    pairs: dict[str, str] = {}
    for tag in tags or ():
        key, value = check_tag_key(tag.get("Key", "")), tag.get("Value", "")
        if len(value) > MAX_TAG_VALUE:
            raise TagParameterInvalid(f"Tag value for key '{key}' must be at most {MAX_TAG_VALUE} characters long; "
                                      f"got {len(value)}")
        if not _tag_text_ok(value):
            raise TagParameterInvalid(f"Tag value for key '{key}' contains characters that are not allowed; use "
                                      "letters, digits, spaces and _ . : / = + - @")
        pairs[key] = value
    if len(pairs) > MAX_RESOURCE_TAGS:
        raise TooManyTags(f"The list of tags is over the limit. The maximum number of tags that can be applied to "
                          f"a repository is {MAX_RESOURCE_TAGS}.")
    return list(pairs.items())


def parse_repository_arn(arn: str, region: str) -> tuple[str, str]:
    """(account, name) of `arn:aws:ecr:<region>:<account>:repository/<name>` in this region."""
    parts = arn.split(":", 5)
    if (len(parts) != 6 or parts[0] != "arn" or parts[1] != "aws" or parts[2] != "ecr"
            or not re.fullmatch(r"[0-9]{12}", parts[4]) or not parts[5].startswith("repository/")):
        raise _invalid("resourceArn", f"Invalid ARN '{arn}': expected an Amazon ECR repository ARN "
                       "arn:aws:ecr:<region>:<account>:repository/<name>")
    if parts[3] != region:
        raise _invalid("resourceArn", f"The ARN '{arn}' is not in the region of this request ({region})")
    name = parts[5][len("repository/"):]
    if not 2 <= len(name) <= 256 or not NAME_RE.fullmatch(name):
        raise _invalid("resourceArn", f"Invalid repository name in ARN '{arn}'")
    return parts[4], name


class RepositoryAdmin:
    """The control plane's repository rules over the metadata store."""

    def __init__(self, db: Backend, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def create(self, account: str, region: str, name: str, *, tags: Sequence[dict[str, str]] | None = None,
                     mutability: str | None = None, exclusion_filters: Sequence[dict[str, str]] | None = None,
                     scan_on_push: bool = False, encryption: dict[str, str] | None = None) -> Repository:
        check_name(name)
        mode = check_mutability(mutability, exclusion_filters)
        enc = check_encryption(encryption)
        pairs = check_tags(tags)
        repo = await self.db.write(changes.create_with_tags, account, region, name, self.clock(), mode.mode,
                                   filter_dicts(mode.filters), scan_on_push, encryption_dict(enc), pairs)
        if repo is None:
            raise RepositoryExists(f"The repository with name '{name}' already exists in the registry with id "
                                   f"'{account}'")
        return Repository.from_row(repo)

    async def describe(self, account: str, region: str, names: Sequence[str] | None = None,
                       max_results: int | None = None, after: str | None = None
                       ) -> tuple[list[Repository], bool]:
        """Named repositories (all must exist, in the order asked), or one page of all of them in name
        order after `after` (the last name of the previous page); and whether more follow."""
        if names is not None:
            if max_results is not None:
                raise _invalid("maxResults", "maxResults cannot be specified with repositoryNames")
            if after is not None:
                raise _invalid("nextToken", "nextToken cannot be specified with repositoryNames")
            wanted = list(dict.fromkeys(names))
            found = await self.db.read(q.repositories_named, account, region, wanted)
            for name in wanted:
                if name not in found:
                    raise not_found(account, name)
            return [Repository.from_row(found[n]) for n in wanted], False
        limit = max_results if max_results is not None else DEFAULT_PAGE
        if not 1 <= limit <= 1000:
            raise _invalid("maxResults", "Member must have value between 1 and 1000")
        rows = await self.db.read(q.list_repositories, account, region, after or "", limit + 1)
        return [Repository.from_row(r) for r in rows[:limit]], len(rows) > limit

    async def delete(self, account: str, region: str, name: str, force: bool = False) -> Repository:
        change = await self.db.write(changes.delete_repository, account, region, name, force, self.clock())
        if change.outcome is RepoOutcome.NOT_EMPTY:
            raise RepositoryNotEmpty(f"The repository with name '{name}' in registry with id '{account}' cannot "
                                     "be deleted because it still contains images")
        if change.outcome is not RepoOutcome.DONE or change.repo is None:
            raise not_found(account, name)
        return Repository.from_row(change.repo)

    async def set_tag_mutability(self, account: str, region: str, name: str, mutability: str,
                                 exclusion_filters: Sequence[dict[str, str]] | None) -> Repository:
        mode = check_mutability(mutability, exclusion_filters)
        repo = await self.db.write(q.set_tag_mutability, account, region, name, mode.mode, filter_dicts(mode.filters))
        if repo is None:
            raise not_found(account, name)
        return Repository.from_row(repo)

    async def set_scan_on_push(self, account: str, region: str, name: str, scan_on_push: bool) -> Repository:
        repo = await self.db.write(q.set_scan_on_push, account, region, name, scan_on_push)
        if repo is None:
            raise not_found(account, name)
        return Repository.from_row(repo)

    async def tags(self, account: str, region: str, name: str) -> list[tuple[str, str]]:
        found = await self.db.read(q.tags_of, account, region, name)
        if found is None:
            raise not_found(account, name)
        return found

    async def tag(self, account: str, region: str, name: str, tags: Sequence[dict[str, str]]) -> None:
        pairs = check_tags(tags)
        outcome = await self.db.write(q.tag_repository, account, region, name, pairs, MAX_RESOURCE_TAGS)
        if outcome is RepoOutcome.UNKNOWN:
            raise not_found(account, name)
        if outcome is RepoOutcome.TOO_MANY:
            raise TooManyTags(f"The list of tags on the repository is over the limit. The maximum number of tags "
                              f"that can be applied to a repository is {MAX_RESOURCE_TAGS}.")

    async def untag(self, account: str, region: str, name: str, keys: Sequence[str]) -> None:
        for key in keys:
            if not 1 <= len(key) <= MAX_TAG_KEY:
                raise TagParameterInvalid(f"Tag keys must be between 1 and {MAX_TAG_KEY} characters long")
        if not await self.db.write(q.untag_repository, account, region, name, list(keys)):
            raise not_found(account, name)
