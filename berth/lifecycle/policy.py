"""The lifecycle policy grammar: ECR's document, validated as ECR does, into typed rules.

Messages follow ECR's wire wording: `Lifecycle policy validation failure: <json-schema message>` inside
InvalidParameterException's `Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '…'`
(the edge adds the envelope; `PolicyInvalid.reason` is the inner text).

Berth's opt-in extensions (a standard ECR document never uses them, so keeps its exact meaning):
- `expire` with `sinceImagePulled` (ECR allows only `transition` there);
- `selection.tagRegexList`: regular expressions (full match) beside ECR's wildcards;
- top-level `protectPulledWithinDays`: no rule expires an image pulled within that many days.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MIN_TEXT, MAX_TEXT = 100, 30_720  # LifecyclePolicyText in the ECR model
MAX_RULES = 50
MAX_WILDCARDS = 4
MAX_REGEX = 256

TAGGED, UNTAGGED, ANY = "tagged", "untagged", "any"
COUNT_MORE_THAN = "imageCountMoreThan"
SINCE_PUSHED, SINCE_PULLED, SINCE_TRANSITIONED = "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned"
STANDARD, ARCHIVE = "standard", "archive"
EXPIRE, TRANSITION = "expire", "transition"

_TOP = ("rules", "protectPulledWithinDays")
_RULE = ("rulePriority", "description", "selection", "action")
_RULE_REQUIRED = ("rulePriority", "selection", "action")
_SELECTION = ("tagStatus", "tagPatternList", "tagPrefixList", "tagRegexList", "storageClass", "countType",
              "countUnit", "countNumber")
_SELECTION_REQUIRED = ("tagStatus", "countType", "countNumber")
_ACTION = ("type", "targetStorageClass")
_TAG_STATUS = (ANY, TAGGED, UNTAGGED)
_COUNT_TYPES = (COUNT_MORE_THAN, SINCE_PULLED, SINCE_PUSHED, SINCE_TRANSITIONED)
_ACTIONS = (EXPIRE, TRANSITION)


class PolicyInvalid(ValueError):
    """A document that is not a valid lifecycle policy; `reason` is the schema message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Selection:
    tag_status: str
    count_type: str
    count_number: int
    count_unit: str | None = None
    prefixes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    storage_class: str = STANDARD

    def matches_tags(self, tags: tuple[str, ...]) -> bool:
        """ECR's tag rules: every entry of the list must match one of the image's tags (AND)."""
        if self.tag_status == ANY:
            return True
        if self.tag_status == UNTAGGED:
            return not tags
        if not tags:
            return False
        if self.prefixes:
            return all(any(t.startswith(p) for t in tags) for p in self.prefixes)
        if self.patterns:
            return all(any(_wildcard(p).fullmatch(t) for t in tags) for p in self.patterns)
        return all(any(re.fullmatch(r, t) for t in tags) for r in self.regexes)


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int
    selection: Selection
    action: str  # expire | transition
    description: str | None = None
    target_storage_class: str | None = None  # archive, with transition


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]  # in priority order (lowest number first)
    protect_pulled_within_days: int | None = None


_WILDCARDS: dict[str, re.Pattern[str]] = {}


def _wildcard(pattern: str) -> re.Pattern[str]:
    compiled = _WILDCARDS.get(pattern)
    if compiled is None:
        compiled = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
        if len(_WILDCARDS) < 4096:
            _WILDCARDS[pattern] = compiled
    return compiled


# json-schema style messages (the wording ECR's validator uses)

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _list(items: list[str]) -> str:
    return json.dumps(items, separators=(",", ":"))


def _type(value: Any, wanted: str) -> None:
    found = _json_type(value)
    if found != wanted and not (wanted == "number" and found == "integer"):
        raise PolicyInvalid(f"instance type ({found}) does not match any allowed primitive type "
                            f'(allowed: ["{wanted}"])')


def _object(doc: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    _type(doc, "object")
    missing = sorted(k for k in required if k not in doc)
    if missing:
        raise PolicyInvalid(f"object has missing required properties ({_list(missing)})")
    extra = sorted(k for k in doc if k not in allowed)
    if extra:
        raise PolicyInvalid(f"object instance has properties which are not allowed by the schema: "
                            f"({_list(extra)})")
    return dict(doc)


def _enum(value: Any, allowed: tuple[str, ...]) -> str:
    _type(value, "string")
    if value not in allowed:
        raise PolicyInvalid(f"instance value ({value}) not found in enum :(possible values: "
                            f"{_list(sorted(allowed))})")
    return str(value)


def _integer(value: Any, minimum: int = 1) -> int:
    _type(value, "integer")
    if value < minimum:
        raise PolicyInvalid(f"numeric instance is lower than the required minimum (minimum: {minimum}, found: {value})")
    return int(value)


def _strings(value: Any) -> tuple[str, ...]:
    _type(value, "array")
    if not value:
        raise PolicyInvalid("array is too short: must have at least 1 elements but instance has 0 elements")
    for item in value:
        _type(item, "string")
        if not item:
            raise PolicyInvalid("string \"\" is too short (length: 0, required minimum: 1)")
    return tuple(value)


def parse(text: str) -> Policy:
    """The policy a document states, or PolicyInvalid with the reason."""
    if len(text) < MIN_TEXT or len(text) > MAX_TEXT:
        raise PolicyInvalid(f"policy text length {len(text)} is outside [{MIN_TEXT}, {MAX_TEXT}]")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise PolicyInvalid("Could not map policyString into LifecyclePolicy.") from None
    if not isinstance(doc, dict):
        raise PolicyInvalid("Could not map policyString into LifecyclePolicy.")
    top = _object(doc, _TOP, ("rules",))
    _type(top["rules"], "array")
    if not top["rules"]:
        raise PolicyInvalid("array is too short: must have at least 1 elements but instance has 0 elements")
    if len(top["rules"]) > MAX_RULES:
        raise PolicyInvalid(f"array is too long: must have at most {MAX_RULES} elements but instance has "
                            f"{len(top['rules'])} elements")
    protect = None if "protectPulledWithinDays" not in top else _integer(top["protectPulledWithinDays"])
    rules = [_rule(r) for r in top["rules"]]
    _cross_rules(rules)
    return Policy(tuple(sorted(rules, key=lambda r: r.priority)), protect)


def _rule(doc: Any) -> Rule:
    r = _object(doc, _RULE, _RULE_REQUIRED)
    priority = _integer(r["rulePriority"])
    description = r.get("description")
    if description is not None:
        _type(description, "string")
    selection = _selection(r["selection"])
    a = _object(r["action"], _ACTION, ("type",))
    action = _enum(a["type"], _ACTIONS)
    target = None if "targetStorageClass" not in a else _enum(a["targetStorageClass"], (ARCHIVE,))
    rule = Rule(priority, selection, action, description, target)
    _cross_fields(rule)
    return rule


def _selection(doc: Any) -> Selection:
    s = _object(doc, _SELECTION, _SELECTION_REQUIRED)
    status = _enum(s["tagStatus"], _TAG_STATUS)
    count_type = _enum(s["countType"], _COUNT_TYPES)
    number = _integer(s["countNumber"])
    unit = None if "countUnit" not in s else _enum(s["countUnit"], ("days",))
    storage = STANDARD if "storageClass" not in s else _enum(s["storageClass"], (ARCHIVE, STANDARD))
    prefixes = _strings(s["tagPrefixList"]) if "tagPrefixList" in s else ()
    patterns = _strings(s["tagPatternList"]) if "tagPatternList" in s else ()
    regexes = _strings(s["tagRegexList"]) if "tagRegexList" in s else ()
    for p in patterns:
        if p.count("*") > MAX_WILDCARDS:
            raise PolicyInvalid(f"tagPatternList value '{p}' has more than {MAX_WILDCARDS} wildcards (*)")
    for r in regexes:
        if len(r) > MAX_REGEX:
            raise PolicyInvalid(f"tagRegexList value is longer than {MAX_REGEX} characters")
        try:
            re.compile(r)
        except re.error as e:
            raise PolicyInvalid(f"tagRegexList value '{r}' is not a valid regular expression: {e}") from None
    return Selection(status, count_type, number, unit, prefixes, patterns, regexes, storage)


def _cross_fields(rule: Rule) -> None:
    """The rules between the fields of one rule."""
    s, p = rule.selection, rule.priority
    lists = [name for name, v in (("tagPrefixList", s.prefixes), ("tagPatternList", s.patterns),
                                  ("tagRegexList", s.regexes)) if v]
    if len(lists) > 1:
        raise PolicyInvalid(f"Rule with priority {p}: specify only one of tagPrefixList, tagPatternList and "
                            f"tagRegexList (found {', '.join(lists)})")
    if s.tag_status == TAGGED and not lists:
        raise PolicyInvalid(f"Rule with priority {p}: tagPrefixList or tagPatternList is required when tagStatus "
                            f"is 'tagged'")
    if s.tag_status != TAGGED and lists:
        raise PolicyInvalid(f"Rule with priority {p}: {lists[0]} can only be used when tagStatus is 'tagged'")
    if s.count_type == COUNT_MORE_THAN and s.count_unit is not None:
        raise PolicyInvalid(f"Rule with priority {p}: countUnit cannot be used with countType imageCountMoreThan")
    if s.count_type != COUNT_MORE_THAN and s.count_unit is None:
        raise PolicyInvalid(f"Rule with priority {p}: countUnit is required with countType {s.count_type}")
    if s.count_type == SINCE_TRANSITIONED:
        if s.storage_class != ARCHIVE:
            raise PolicyInvalid(f"Rule with priority {p}: countType sinceImageTransitioned requires storageClass "
                                f"'archive'")
        if rule.action != EXPIRE:
            raise PolicyInvalid(f"Rule with priority {p}: countType sinceImageTransitioned can only be used with "
                                f"action type 'expire'")
    elif s.storage_class != STANDARD:
        raise PolicyInvalid(f"Rule with priority {p}: storageClass 'archive' can only be used with countType "
                            f"sinceImageTransitioned")
    if rule.action == TRANSITION and rule.target_storage_class is None:
        raise PolicyInvalid(f"Rule with priority {p}: action type 'transition' requires targetStorageClass")
    if rule.action == EXPIRE and rule.target_storage_class is not None:
        raise PolicyInvalid(f"Rule with priority {p}: targetStorageClass can only be used with action type "
                            f"'transition'")


def _cross_rules(rules: list[Rule]) -> None:
    """The rules between the rules of one policy."""
    seen: set[int] = set()
    for r in rules:
        if r.priority in seen:
            raise PolicyInvalid(f"The rulePriority {r.priority} is used by more than one rule; rule priorities "
                                f"must be unique")
        seen.add(r.priority)
    highest = max(seen)
    for r in rules:
        if r.selection.tag_status == ANY and r.priority != highest:
            raise PolicyInvalid(f"Rule with priority {r.priority}: a rule with tagStatus 'any' must have the highest "
                                f"rulePriority")
    untagged: dict[str, int] = {}
    for r in sorted(rules, key=lambda r: r.priority):
        if r.selection.tag_status in (UNTAGGED, ANY):
            other = untagged.get(r.selection.storage_class)
            if other is not None:
                raise PolicyInvalid(f"Rules with priorities {other} and {r.priority}: only one rule selecting "
                                    f"storageClass '{r.selection.storage_class}' may select untagged images")
            untagged[r.selection.storage_class] = r.priority

