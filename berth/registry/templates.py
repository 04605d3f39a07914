"""Repository creation templates (ECR's CreateRepositoryCreationTemplate family) and the one way a
repository is created by a path that is not CreateRepository: pull-through cache, replication, create on
push. The template that applies is the one with the longest prefix the name falls under (`prod` covers
`prod/...`; `ROOT` covers every name) among those applied for that path.

    repo, created = await templates.create_repository_from_template(account, region, name,
                                                                      "REPLICATION", may_create=check)
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from berth.db import lifecycle as ql
from berth.db import policies as qp
from berth.db import templates as q
from berth.db.registry import RepoRow
from berth.db.store import Backend, Txn
from berth.db.templates import TemplateRow
from berth.iam.policy import PolicyError, parse_policy
from berth.registry import changes
from berth.registry.errors import NameUnknown, ParameterInvalid
from berth.registry.model import Encryption, Mutability, Repository, filter_dicts
from berth.registry.names import check_name
from berth.registry.repositories import check_encryption, check_mutability, check_tags

ROOT = "ROOT"
PULL_THROUGH_CACHE, REPLICATION, CREATE_ON_PUSH = "PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH"
APPLIED_FOR = (PULL_THROUGH_CACHE, REPLICATION, CREATE_ON_PUSH)
MAX_TEMPLATES = 300  # ECR's quota of creation templates per registry


class TemplateError(Exception):
    """A refusal of the template operations: `kind` is ALREADY_EXISTS, NOT_FOUND or LIMIT."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Template:
    prefix: str
    description: str
    applied_for: tuple[str, ...]
    mutability: Mutability
    encryption: Encryption
    resource_tags: tuple[tuple[str, str], ...]
    repository_policy: str | None
    lifecycle_policy: str | None
    custom_role_arn: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, r: TemplateRow) -> Template:
        filters = json.loads(r.tag_mutability_filters or "[]")
        enc = json.loads(r.encryption)
        probe = RepoRow(0, "", "", "", 0.0, r.tag_mutability, json.dumps(filters), 0, json.dumps(enc))
        repo = Repository.from_row(probe)  # one decoding of mutability and encryption
        return cls(r.prefix, r.description, tuple(json.loads(r.applied_for)), repo.mutability, repo.encryption,
                   tuple((t["Key"], t["Value"]) for t in json.loads(r.resource_tags)), r.repository_policy,
                   r.lifecycle_policy, r.custom_role_arn, r.created_at, r.updated_at)

    def covers(self, name: str) -> bool:
        return self.prefix == ROOT or name.startswith(self.prefix + "/")


def normalize_prefix(prefix: str) -> str:
    """ECR's prefix: ROOT, or a namespace; a trailing "/" is implied and not stored."""
    if prefix == ROOT:
        return prefix
    bare = prefix[:-1] if prefix.endswith("/") else prefix
    if not bare:
        raise ParameterInvalid("Invalid parameter at 'prefix' failed to satisfy constraint: 'a prefix or ROOT'")
    return bare


def best_template(templates: Sequence[Template], name: str, applied_for: str) -> Template | None:
    """The template for creating `name` by `applied_for`: the longest prefix covering it (ROOT last)."""
    found = [t for t in templates if applied_for in t.applied_for and t.covers(name)]
    found.sort(key=lambda t: -1 if t.prefix == ROOT else len(t.prefix), reverse=True)
    return found[0] if found else None


def _check_applied_for(values: Sequence[str] | None) -> tuple[str, ...]:
    picked = tuple(dict.fromkeys(values or ()))
    if not picked:
        raise ParameterInvalid("Invalid parameter at 'appliedFor' failed to satisfy constraint: "
                               "'Member must contain at least one of PULL_THROUGH_CACHE, REPLICATION, CREATE_ON_PUSH'")
    for v in picked:
        if v not in APPLIED_FOR:
            raise ParameterInvalid(f"Invalid parameter at 'appliedFor' failed to satisfy constraint: "
                                   f"'Member must satisfy enum value set: [{', '.join(APPLIED_FOR)}]' ({v!r})")
    return picked


def _check_repository_policy(text: str | None) -> str | None:
    if not text:
        return None
    try:
        parse_policy(text, "repository")
    except (PolicyError, ValueError) as e:
        raise ParameterInvalid(f"Invalid parameter at 'repositoryPolicy' failed to satisfy constraint: "
                               f"'Invalid repository policy provided: {e}'") from None
    return text


def _check_lifecycle_policy(text: str | None) -> str | None:
    """The lifecycle grammar itself (berth/lifecycle/policy.py), so a template cannot carry a policy that
    PutLifecyclePolicy would refuse."""
    if not text:
        return None
    from berth.lifecycle.policy import PolicyInvalid, parse

    try:
        parse(text)
    except PolicyInvalid as e:
        raise ParameterInvalid("Invalid parameter at 'lifecyclePolicy' failed to satisfy constraint: "
                               f"'Lifecycle policy validation failure: {e.reason}'") from None
    return text


def _check_role(arn: str | None) -> str | None:
    if not arn:
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "iam"] or not parts[5].startswith("role/"):
        raise ParameterInvalid(f"Invalid parameter at 'customRoleArn' failed to satisfy constraint: "
                               f"'an IAM role ARN arn:aws:iam::<account>:role/<name>' ({arn!r})")
    return arn


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    """The columns the given request members set, validated (only the members present)."""
    out: dict[str, Any] = {}
    if "description" in params:
        out["description"] = params["description"] or ""
    if "appliedFor" in params:
        out["applied_for"] = json.dumps(list(_check_applied_for(params["appliedFor"])))
    if "imageTagMutability" in params or "imageTagMutabilityExclusionFilters" in params:
        m = check_mutability(params.get("imageTagMutability"), params.get("imageTagMutabilityExclusionFilters"))
        out["tag_mutability"] = m.mode
        out["tag_mutability_filters"] = json.dumps(filter_dicts(m.filters))
    if "encryptionConfiguration" in params:
        e = check_encryption(params["encryptionConfiguration"])
        out["encryption"] = json.dumps({"encryptionType": e.kind, **({"kmsKey": e.kms_key} if e.kms_key else {})})
    if "resourceTags" in params:
        out["resource_tags"] = json.dumps([{"Key": k, "Value": v} for k, v in check_tags(params["resourceTags"])])
    if "repositoryPolicy" in params:
        out["repository_policy"] = _check_repository_policy(params["repositoryPolicy"])
    if "lifecyclePolicy" in params:
        out["lifecycle_policy"] = _check_lifecycle_policy(params["lifecyclePolicy"])
    if "customRoleArn" in params:
        out["custom_role_arn"] = _check_role(params["customRoleArn"])
    return out


def _create_from(account: str, region: str, name: str, now: float, t: Template | None) -> Txn[tuple[RepoRow, bool]]:
    """The repository with the template's settings, tags and policy, in one transaction with its event."""
    if t is None:
        created = yield from changes.create_repository(account, region, name, now)
        return created.repo, created.created
    row = yield from changes.create_with_tags(account, region, name, now, t.mutability.mode,
                                              filter_dicts(t.mutability.filters), False,
                                              {"encryptionType": t.encryption.kind,
                                               **({"kmsKey": t.encryption.kms_key} if t.encryption.kms_key else {})},
                                              list(t.resource_tags))
    if row is None:
        from berth.db.registry import get_repository

        existing = yield from get_repository(account, region, name)
        assert existing is not None
        return existing, False
    if t.repository_policy:
        yield from qp.set_repository_policy(row.id, t.repository_policy)
    if t.lifecycle_policy:
        yield from ql.put_policy(row.id, t.lifecycle_policy, now)
    return row, True


CreatedHook = Callable[[Repository, Template], Awaitable[None]]


class Templates:
    """The creation-template rules over the metadata store (wired once in app.py)."""

    def __init__(self, db: Backend, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        # run after a repository was created from a template (e.g. to apply its lifecycle policy)
        self.on_created: list[CreatedHook] = []

    async def create(self, account: str, region: str, params: dict[str, Any]) -> Template:
        prefix = normalize_prefix(params["prefix"])
        fields = _fields({**params, "appliedFor": params.get("appliedFor")})
        now = self.clock()
        m = Mutability()
        row = TemplateRow(prefix, "", "[]", m.mode, "[]", json.dumps({"encryptionType": "AES256"}), "[]",
                          None, None, None, now, now)
        row = replace(row, **fields)
        outcome = await self.db.write(q.create_template, account, region, row, MAX_TEMPLATES)
        if outcome == "limit":
            raise TemplateError("LIMIT", f"The maximum number of repository creation templates ({MAX_TEMPLATES}) "
                                         "has been reached for this registry")
        if outcome == "exists":
            raise TemplateError("ALREADY_EXISTS", f"A repository creation template with the prefix '{prefix}' "
                                                  f"already exists in the registry with id '{account}'")
        return Template.from_row(row)

    async def update(self, account: str, region: str, params: dict[str, Any]) -> Template:
        prefix = normalize_prefix(params["prefix"])
        fields = _fields({k: v for k, v in params.items() if k != "prefix"})
        fields["updated_at"] = self.clock()
        row = await self.db.write(q.update_template, account, region, prefix, fields)
        if row is None:
            raise self._not_found(account, prefix)
        return Template.from_row(row)

    async def delete(self, account: str, region: str, prefix: str) -> Template:
        prefix = normalize_prefix(prefix)
        row = await self.db.write(q.delete_template, account, region, prefix)
        if row is None:
            raise self._not_found(account, prefix)
        return Template.from_row(row)

    async def describe(self, account: str, region: str, prefixes: Sequence[str] | None) -> list[Template]:
        wanted = None if prefixes is None else list(dict.fromkeys(normalize_prefix(p) for p in prefixes))
        return [Template.from_row(r) for r in await self.db.read(q.list_templates, account, region, wanted)]

    @staticmethod
    def _not_found(account: str, prefix: str) -> TemplateError:
        return TemplateError("NOT_FOUND", f"The repository creation template with the prefix '{prefix}' does not "
                                          f"exist in the registry with id '{account}'")

    async def template_for(self, account: str, region: str, name: str, applied_for: str) -> Template | None:
        return best_template(await self.describe(account, region, None), name, applied_for)

    async def create_repository_from_template(
            self, account: str, region: str, name: str, applied_for: str,
            may_create: Callable[[], Awaitable[None]] | None = None,
            fallback_defaults: bool = False) -> tuple[Repository, bool]:
        """Create `name` (if absent) with the settings of the best template for `applied_for`
        (PULL_THROUGH_CACHE, REPLICATION or CREATE_ON_PUSH); (repository, created now?).

        `may_create` is the caller's authorization of ecr:CreateRepository (it raises to refuse), asked
        only when something would be created. No template: NameUnknown, or default settings when
        `fallback_defaults` (BERTH_CREATE_ON_PUSH: a ROOT template with default settings)."""
        check_name(name)
        if applied_for not in APPLIED_FOR:
            raise ValueError(f"unknown appliedFor {applied_for!r}")
        template = await self.template_for(account, region, name, applied_for)
        if template is None and not fallback_defaults:
            raise NameUnknown(f"repository {name!r} not found", detail={"name": name})
        if may_create is not None:
            await may_create()
        row, created = await self.db.write(_create_from, account, region, name, self.clock(), template)
        repo = Repository.from_row(row)
        if created and template is not None:
            for hook in self.on_created:
                await hook(repo, template)
        return repo, created
