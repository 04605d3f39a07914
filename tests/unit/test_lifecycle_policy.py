"""The lifecycle policy grammar: good documents parse into rules, bad ones fail with ECR's wording."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.lifecycle.policy import ARCHIVE, EXPIRE, STANDARD, TRANSITION, PolicyInvalid, parse


def doc(*rules: dict[str, Any], **top: Any) -> str:
    text = json.dumps({"rules": list(rules), **top})
    return text + " " * max(0, 100 - len(text))  # the model's minimum length is 100


def rule(priority: int = 1, action: dict[str, Any] | None = None, **selection: Any) -> dict[str, Any]:
    sel = {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1, **selection}
    return {"rulePriority": priority, "selection": sel, "action": {"type": "expire"} if action is None else action}


GOOD = [
    doc(rule()),
    doc(rule(1, tagStatus="tagged", tagPrefixList=["prod"], countNumber=10),
        rule(2, tagStatus="any", countType="sinceImagePushed", countUnit="days", countNumber=30)),
    doc(rule(1, tagStatus="tagged", tagPatternList=["*test*1*2*3"])),  # four wildcards: the documented maximum
    doc(rule(1, tagStatus="tagged", tagPatternList=["prod*", "*-release"])),
    doc(rule(1, {"type": "transition", "targetStorageClass": "archive"}, tagStatus="any",
             countType="sinceImagePulled", countUnit="days", countNumber=60)),
    doc(rule(1, tagStatus="untagged", storageClass="archive", countType="sinceImageTransitioned",
             countUnit="days", countNumber=90),
        rule(2, tagStatus="untagged", countType="sinceImagePushed", countUnit="days", countNumber=1)),
    doc(rule(3, tagStatus="tagged", tagPrefixList=["a"]), rule(10, tagStatus="tagged", tagPrefixList=["b"])),
    doc({**rule(), "description": "keep one"}),
    # Berth's extensions
    doc(rule(1, tagStatus="any", countType="sinceImagePulled", countUnit="days", countNumber=30)),  # expire on pull
    doc(rule(1, tagStatus="tagged", tagRegexList=[r"v\d+\.\d+\.\d+"])),
    doc(rule(), protectPulledWithinDays=7),
]


@pytest.mark.parametrize("text", GOOD)
def test_good_documents_parse(text: str) -> None:
    policy = parse(text)
    assert [r.priority for r in policy.rules] == sorted(r.priority for r in policy.rules)


def test_parsed_fields() -> None:
    p = parse(doc(rule(2, {"type": "transition", "targetStorageClass": "archive"}, tagStatus="tagged",
                       tagPrefixList=["prod", "x"], countType="sinceImagePushed", countUnit="days", countNumber=5),
                  rule(1, tagStatus="untagged"), protectPulledWithinDays=3))
    first, second = p.rules
    assert (first.priority, first.action, first.selection.tag_status) == (1, EXPIRE, "untagged")
    assert (second.action, second.target_storage_class, second.selection.prefixes) == (TRANSITION, ARCHIVE,
                                                                                         ("prod", "x"))
    assert second.selection.storage_class == STANDARD and second.selection.count_number == 5
    assert p.protect_pulled_within_days == 3


NOT_ALLOWED = "object instance has properties which are not allowed by the schema: "
LOW = "numeric instance is lower than the required minimum (minimum: 1, found: 0)"
TYPE = 'instance type ({}) does not match any allowed primitive type (allowed: ["{}"])'

BAD = [
    ("{not json" + " " * 100, "Could not map policyString into LifecyclePolicy."),
    (json.dumps([1]) + " " * 100, "Could not map policyString into LifecyclePolicy."),
    (doc(rule()).replace('"rules"', '"rulez"'), 'object has missing required properties (["rules"])'),
    (doc(), "array is too short: must have at least 1 elements but instance has 0 elements"),
    (doc(*[rule(i, tagStatus="tagged", tagPrefixList=[f"p{i}"]) for i in range(1, 52)]),
     "array is too long: must have at most 50 elements but instance has 51 elements"),
    (doc(rule(), extra=1), NOT_ALLOWED + '(["extra"])'),
    (doc({"rulePriority": 1, "action": {"type": "expire"}}), 'object has missing required properties (["selection"])'),
    (doc({**rule(), "color": "red"}), NOT_ALLOWED + '(["color"])'),
    (doc(rule(0)), LOW),
    (doc({**rule(), "rulePriority": "1"}),
     TYPE.format("string", "integer")),
    (doc({**rule(), "rulePriority": 1.5}),
     TYPE.format("number", "integer")),
    (doc({**rule(), "description": 5}),
     TYPE.format("integer", "string")),
    (doc(rule(tagStatus="foo")),
     'instance value (foo) not found in enum :(possible values: ["any","tagged","untagged"])'),
    (doc(rule(countType="imageCountLessThan")),
     "instance value (imageCountLessThan) not found in enum :(possible values: "
     '["imageCountMoreThan","sinceImagePulled","sinceImagePushed","sinceImageTransitioned"])'),
    (doc(rule(countNumber=0)), LOW),
    (doc(rule(countNumber=True)),
     TYPE.format("boolean", "integer")),
    (doc(rule(countType="sinceImagePushed", countUnit="hours")),
     'instance value (hours) not found in enum :(possible values: ["days"])'),
    (doc(rule(action={"type": "delete"})), 'instance value (delete) not found in enum :(possible values: '
                                          '["expire","transition"])'),
    (doc(rule(action={})), 'object has missing required properties (["type"])'),
    (doc(rule(action={"type": "transition", "targetStorageClass": "glacier"})),
     'instance value (glacier) not found in enum :(possible values: ["archive"])'),
    (doc(rule(storageClass="cold")), 'instance value (cold) not found in enum :(possible values: '
                                     '["archive","standard"])'),
    (doc(rule(tagStatus="tagged", tagPrefixList=[])),
     "array is too short: must have at least 1 elements but instance has 0 elements"),
    (doc(rule(tagStatus="tagged", tagPrefixList="prod")),
     TYPE.format("string", "array")),
    (doc(rule(tagStatus="tagged", tagPatternList=["*a*b*c*d*"])), "has more than 4 wildcards"),
    (doc(rule(tagStatus="tagged", tagRegexList=["(unclosed"])), "is not a valid regular expression"),
    # cross-field rules
    (doc(rule(tagStatus="tagged")), "tagPrefixList or tagPatternList is required when tagStatus is 'tagged'"),
    (doc(rule(tagStatus="untagged", tagPrefixList=["x"])), "can only be used when tagStatus is 'tagged'"),
    (doc(rule(tagStatus="any", tagPatternList=["x*"])), "can only be used when tagStatus is 'tagged'"),
    (doc(rule(tagStatus="tagged", tagPrefixList=["a"], tagPatternList=["b*"])),
     "specify only one of tagPrefixList, tagPatternList and tagRegexList"),
    (doc(rule(countUnit="days")), "countUnit cannot be used with countType imageCountMoreThan"),
    (doc(rule(countType="sinceImagePushed")), "countUnit is required with countType sinceImagePushed"),
    (doc(rule(countType="sinceImageTransitioned", countUnit="days")),
     "countType sinceImageTransitioned requires storageClass 'archive'"),
    (doc(rule(storageClass="archive")),
     "storageClass 'archive' can only be used with countType sinceImageTransitioned"),
    (doc(rule(action={"type": "transition", "targetStorageClass": "archive"}, storageClass="archive",
              countType="sinceImageTransitioned", countUnit="days")),
     "sinceImageTransitioned can only be used with action type 'expire'"),
    (doc(rule(action={"type": "transition"})), "action type 'transition' requires targetStorageClass"),
    (doc(rule(action={"type": "expire", "targetStorageClass": "archive"})),
     "targetStorageClass can only be used with action type 'transition'"),
    (doc(rule(1, tagStatus="tagged", tagPrefixList=["a"]), rule(1, tagStatus="tagged", tagPrefixList=["b"])),
     "The rulePriority 1 is used by more than one rule"),
    (doc(rule(1, tagStatus="any"), rule(2, tagStatus="tagged", tagPrefixList=["b"])),
     "a rule with tagStatus 'any' must have the highest rulePriority"),
    (doc(rule(1), rule(2, countType="sinceImagePushed", countUnit="days")),
     "only one rule selecting storageClass 'standard' may select untagged images"),
    (doc(rule(1), rule(2, tagStatus="any")), "only one rule selecting storageClass 'standard' may select untagged"),
    (doc(rule(), protectPulledWithinDays=0), LOW),
    ('{"rules":[]}', "policy text length 12 is outside [100, 30720]"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_bad_documents_fail_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(PolicyInvalid) as e:
        parse(text)
    assert reason in e.value.reason


def test_two_untagged_rules_in_different_storage_classes_are_allowed() -> None:
    parse(doc(rule(1, storageClass="archive", countType="sinceImageTransitioned", countUnit="days", countNumber=90),
              rule(2)))


@pytest.mark.parametrize(("selection", "tags", "expected"), [
    ({"tagStatus": "tagged", "tagPrefixList": ["prod"]}, ("prod-1",), True),
    ({"tagStatus": "tagged", "tagPrefixList": ["prod", "beta"]}, ("prod-1",), False),  # AND over the list
    ({"tagStatus": "tagged", "tagPrefixList": ["prod", "beta"]}, ("prod-1", "beta-1"), True),
    ({"tagStatus": "tagged", "tagPatternList": ["prod*"]}, ("xprod",), False),
    ({"tagStatus": "tagged", "tagPatternList": ["*prod*"]}, ("xprodx",), True),
    ({"tagStatus": "tagged", "tagPatternList": ["v1.*"]}, ("v1x2",), False),  # '.' is literal
    ({"tagStatus": "tagged", "tagPatternList": ["a*", "*z"]}, ("abc", "xyz"), True),
    ({"tagStatus": "tagged", "tagRegexList": [r"v\d+"]}, ("v12",), True),
    ({"tagStatus": "tagged", "tagRegexList": [r"v\d+"]}, ("v12-rc",), False),  # a full match
    ({"tagStatus": "untagged"}, (), True),
    ({"tagStatus": "untagged"}, ("a",), False),
    ({"tagStatus": "any"}, ("a",), True),
    ({"tagStatus": "tagged", "tagPrefixList": ["a"]}, (), False),
])
def test_tag_matching(selection: dict[str, Any], tags: tuple[str, ...], expected: bool) -> None:
    p = parse(doc(rule(**selection)))
    assert p.rules[0].selection.matches_tags(tags) is expected


def test_the_readme_examples_are_valid_policies() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Lifecycle policies and the archive storage class"):]
    blocks = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 3
    for block in blocks:
        parse("\n".join(line.strip() for line in block.splitlines()))
