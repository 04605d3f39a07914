"""The replication configuration: ECR's document, its rules beyond the model's shapes, and which
destinations an image of a repository goes to. Pure: no store, no clock.

Botocore's model (validated at the edge) already bounds the lists, the filter and region patterns and
the enums; here: the unique-destination quota and a destination equal to the source registry.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_UNIQUE_DESTINATIONS = 25  # "up to 25 unique destinations across all rules" (ECR user guide)
PREFIX_MATCH = "PREFIX_MATCH"
# Extension (Berth): a rule's `tagFilters` [{"filter": "v*", "filterType": "WILDCARD"}] replicates only pushes
# whose tag matches one (and only those tags); referrers, which carry no tag, still follow their subject.
WILDCARD = "WILDCARD"
MAX_TAG_FILTERS = 100
_TAG_FILTER = re.compile(r"[0-9a-zA-Z._*-]{1,128}")


class ConfigurationInvalid(ValueError):
    """A configuration ECR refuses with InvalidParameterException; the message is ECR's wording."""


@dataclass(frozen=True, slots=True, order=True)
class Destination:
    region: str
    registry_id: str

    def key(self) -> str:
        return f"{self.registry_id}/{self.region}"


@dataclass(frozen=True, slots=True)
class Rule:
    destinations: tuple[Destination, ...]
    prefixes: tuple[str, ...]  # empty: every repository
    delete_replication: bool = False
    tag_filters: tuple[str, ...] | None = None  # extension; None: every tag (and untagged pushes)

    def applies_to(self, repository: str) -> bool:
        return not self.prefixes or any(repository.startswith(p) for p in self.prefixes)

    def takes_tag(self, tag: str | None) -> bool:
        if self.tag_filters is None:
            return True
        return tag is not None and any(fnmatch.fnmatchcase(tag, f) for f in self.tag_filters)


@dataclass(frozen=True, slots=True)
class Configuration:
    rules: tuple[Rule, ...] = ()

    def destinations_for(self, repository: str, tag: str | None = None, referrer: bool = False) -> list[Destination]:
        """Every destination an image pushed to `repository` (with `tag`) goes to, once each, in rule order.
        A referrer (a manifest with a subject) is not held back by tag filters: it follows its subject."""
        out: dict[Destination, None] = {}
        for rule in self.rules:
            if rule.applies_to(repository) and (referrer or rule.takes_tag(tag)):
                out.update(dict.fromkeys(rule.destinations))
        return list(out)

    def tags_for(self, repository: str, dest: Destination) -> tuple[str, ...] | None:
        """The tag filters that bound what is tagged at `dest` (None: every tag): those of the rules that
        send `repository` there; any such rule without filters lifts the bound."""
        found: list[str] = []
        for rule in self.rules:
            if dest in rule.destinations and rule.applies_to(repository):
                if rule.tag_filters is None:
                    return None
                found += rule.tag_filters
        return tuple(dict.fromkeys(found)) or None  # no rule any more (a copy queued before a change): all

    def deletes_to(self, repository: str) -> list[Destination]:
        """The destinations that also receive deletes of `repository`'s images and tags (deleteReplication)."""
        out: dict[Destination, None] = {}
        for rule in self.rules:
            if rule.delete_replication and rule.applies_to(repository):
                out.update(dict.fromkeys(rule.destinations))
        return list(out)

    def all_destinations(self) -> list[Destination]:
        out: dict[Destination, None] = {}
        for rule in self.rules:
            out.update(dict.fromkeys(rule.destinations))
        return list(out)

    def to_document(self) -> dict[str, Any]:
        """ECR's shape, as DescribeRegistry and PutReplicationConfiguration return it."""
        rules = []
        for r in self.rules:
            rule: dict[str, Any] = {"destinations": [{"region": d.region, "registryId": d.registry_id}
                                                     for d in r.destinations]}
            if r.prefixes:
                rule["repositoryFilters"] = [{"filter": p, "filterType": PREFIX_MATCH} for p in r.prefixes]
            if r.delete_replication:
                rule["deleteReplication"] = {"enabled": True}
            if r.tag_filters is not None:
                rule["tagFilters"] = [{"filter": f, "filterType": WILDCARD} for f in r.tag_filters]
            rules.append(rule)
        return {"rules": rules}

    def to_json(self) -> str:
        return json.dumps(self.to_document(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Configuration:
        if not text:
            return cls()
        return parse(json.loads(text))


def _invalid(constraint: str) -> ConfigurationInvalid:
    return ConfigurationInvalid(f"Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                                f"'{constraint}'")


def parse(document: Mapping[str, Any]) -> Configuration:
    """A ReplicationConfiguration already validated against the model's shapes; ConfigurationInvalid otherwise."""
    rules = []
    for raw in document.get("rules") or ():
        dests = tuple(dict.fromkeys(Destination(str(d["region"]), str(d["registryId"]))
                                    for d in raw.get("destinations") or ()))
        filters: Sequence[Mapping[str, str]] = raw.get("repositoryFilters") or ()
        for f in filters:
            if f.get("filterType") != PREFIX_MATCH:
                raise _invalid(f"Member must satisfy enum value set: [{PREFIX_MATCH}]")
        prefixes = tuple(dict.fromkeys(str(f["filter"]) for f in filters))
        delete = bool((raw.get("deleteReplication") or {}).get("enabled", False))
        rules.append(Rule(dests, prefixes, delete, _tag_filters(raw.get("tagFilters"))))
    return Configuration(tuple(rules))


def _tag_filters(raw: object) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TAG_FILTERS:
        raise _invalid(f"tagFilters must be a list of 1 to {MAX_TAG_FILTERS} filters")
    out = []
    for f in raw:
        if not isinstance(f, Mapping) or set(f) != {"filter", "filterType"} or f["filterType"] != WILDCARD \
                or not isinstance(f["filter"], str) or not _TAG_FILTER.fullmatch(f["filter"]):
            raise _invalid(f"Invalid tag filter {json.dumps(f)[:200]}: expected {{\"filter\": <1-128 of "
                           f"[0-9a-zA-Z._*-]>, \"filterType\": \"{WILDCARD}\"}}")
        out.append(f["filter"])
    return tuple(dict.fromkeys(out))


def check(config: Configuration, account: str, region: str) -> Configuration:
    """ECR's refusals beyond the model: a destination equal to the source, more than 25 unique destinations."""
    for d in config.all_destinations():
        if d.region == region and d.registry_id == account:
            raise _invalid("Replication destination cannot be the same as the source registry")
    if len(config.all_destinations()) > MAX_UNIQUE_DESTINATIONS:
        raise _invalid(f"Replication configuration can have at most {MAX_UNIQUE_DESTINATIONS} unique destinations "
                       f"across all rules")
    return config
