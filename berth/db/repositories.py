"""Repository administration (ECR control plane): listing, settings, resource tags, deletion, as Txn generators.

Rules (what is valid, what may be deleted) are decided by berth.registry.repositories; these store, and
make each decision atomic with its write (PostgreSQL runs READ COMMITTED; SQLite's single writer
already serialises and ignores Q.lock):

- delete_repository: the repository row is locked FOR UPDATE before the "still holds images?" check; a
  push locks the same row FOR KEY SHARE (berth.db.registry.put_manifest), so it either commits first
  and is seen, or waits and then finds no repository.
- tag_repository: the repository row is locked FOR UPDATE before the tags are counted against the
  limit, so concurrent TagResource calls are counted one after the other.
- create_with_tags: INSERT ... ON CONFLICT DO NOTHING decides who creates. The setters are single UPDATEs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from berth.db.registry import REPO_COLUMNS, RepoRow, create_repository, get_repository
from berth.db.store import Q, Txn


def create_with_tags(account: str, region: str, name: str, now: float, tag_mutability: str,
                     exclusion_filters: Sequence[Mapping[str, str]], scan_on_push: bool, encryption: Mapping[str, str],
                     tags: Sequence[tuple[str, str]]) -> Txn[RepoRow | None]:
    """Create a repository with its settings and resource tags; None (nothing written) if it exists."""
    repo, created = yield from create_repository(account, region, name, now, tag_mutability,
                                                 exclusion_filters, scan_on_push, encryption)
    if not created:
        return None
    for key, value in tags:
        yield Q("INSERT INTO repository_tags (repository_id, key, value) VALUES (?, ?, ?)", (repo.id, key, value))
    return repo


def list_repositories(account: str, region: str, after: str, limit: int) -> Txn[list[RepoRow]]:
    """Repositories of a registry in name order, strictly after `after`."""
    rows = yield Q(f"SELECT {REPO_COLUMNS} FROM repositories WHERE account_id = ? AND region = ? AND name > ? "
                   "ORDER BY name LIMIT ?", (account, region, after, limit), "all")
    return [RepoRow(*r) for r in rows]


def repositories_named(account: str, region: str, names: Sequence[str]) -> Txn[dict[str, RepoRow]]:
    found: dict[str, RepoRow] = {}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        rows = yield Q(f"SELECT {REPO_COLUMNS} FROM repositories WHERE account_id = ? AND region = ? "
                       f"AND name IN ({marks})", (account, region, *chunk), "all")
        for r in rows:
            repo = RepoRow(*r)
            found[repo.name] = repo
    return found


class RepoOutcome(Enum):
    DONE = "done"
    UNKNOWN = "unknown"  # no such repository
    NOT_EMPTY = "not_empty"  # delete without force: it still holds images (nothing deleted)
    TOO_MANY = "too_many"  # tag: the repository would carry more tags than the limit (nothing written)


@dataclass(frozen=True, slots=True)
class RepoChange:
    outcome: RepoOutcome
    repo: RepoRow | None = None


def _locked_repository(account: str, region: str, name: str) -> Txn[RepoRow | None]:
    row = yield Q(f"SELECT {REPO_COLUMNS} FROM repositories WHERE account_id = ? AND region = ? AND name = ?",
                  (account, region, name), "one", lock="UPDATE")
    return None if row is None else RepoRow(*row)


def delete_repository(account: str, region: str, name: str, force: bool) -> Txn[RepoChange]:
    """Delete a repository with its images, tags, blob links, uploads, policy and resource tags
    (NOT_EMPTY, nothing deleted, when it still holds images and `force` is false). Blob files stay in
    storage for garbage collection."""
    repo = yield from _locked_repository(account, region, name)
    if repo is None:
        return RepoChange(RepoOutcome.UNKNOWN)
    if not force:
        image = yield Q("SELECT 1 FROM manifests WHERE repository_id = ? LIMIT 1", (repo.id,), "one")
        if image is not None:
            return RepoChange(RepoOutcome.NOT_EMPTY, repo)
    # The foreign keys cascade too; deleting explicitly keeps this independent of that.
    for table in ("tags", "manifest_refs", "manifests", "repository_blobs", "uploads", "repository_policies",
                  "repository_tags"):
        yield Q(f"DELETE FROM {table} WHERE repository_id = ?", (repo.id,))
    yield Q("DELETE FROM repositories WHERE id = ?", (repo.id,))
    return RepoChange(RepoOutcome.DONE, repo)


def set_tag_mutability(account: str, region: str, name: str, mutability: str,
                       exclusion_filters: Sequence[Mapping[str, str]]) -> Txn[RepoRow | None]:
    row = yield Q(f"UPDATE repositories SET tag_mutability = ?, tag_mutability_filters = ? "
                  f"WHERE account_id = ? AND region = ? AND name = ? RETURNING {REPO_COLUMNS}",
                  (mutability, json.dumps([dict(f) for f in exclusion_filters]), account, region, name), "one")
    return None if row is None else RepoRow(*row)


def set_scan_on_push(account: str, region: str, name: str, scan_on_push: bool) -> Txn[RepoRow | None]:
    row = yield Q(f"UPDATE repositories SET scan_on_push = ? WHERE account_id = ? AND region = ? AND name = ? "
                  f"RETURNING {REPO_COLUMNS}", (int(scan_on_push), account, region, name), "one")
    return None if row is None else RepoRow(*row)


# resource tags

def tags_of(account: str, region: str, name: str) -> Txn[list[tuple[str, str]] | None]:
    """The repository's resource tags in key order; None when the repository does not exist."""
    repo = yield from get_repository(account, region, name)
    if repo is None:
        return None
    rows = yield Q("SELECT key, value FROM repository_tags WHERE repository_id = ? ORDER BY key", (repo.id,), "all")
    return [(r[0], r[1]) for r in rows]


def tag_repository(account: str, region: str, name: str, tags: Sequence[tuple[str, str]],
                   limit: int) -> Txn[RepoOutcome]:
    """Add or overwrite tags; TOO_MANY (nothing written) when the repository would carry more than `limit`."""
    repo = yield from _locked_repository(account, region, name)
    if repo is None:
        return RepoOutcome.UNKNOWN
    rows = yield Q("SELECT key FROM repository_tags WHERE repository_id = ?", (repo.id,), "all")
    if len({r[0] for r in rows} | {k for k, _ in tags}) > limit:
        return RepoOutcome.TOO_MANY
    for key, value in tags:
        yield Q("INSERT INTO repository_tags (repository_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (repository_id, key) DO UPDATE SET value = excluded.value", (repo.id, key, value))
    return RepoOutcome.DONE


def untag_repository(account: str, region: str, name: str, keys: Sequence[str]) -> Txn[bool]:
    """Remove the tags with these keys (absent keys are ignored); False when the repository does not exist."""
    repo = yield from get_repository(account, region, name)
    if repo is None:
        return False
    for key in dict.fromkeys(keys):
        yield Q("DELETE FROM repository_tags WHERE repository_id = ? AND key = ?", (repo.id, key))
    return True
