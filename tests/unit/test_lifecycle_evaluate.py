"""The pure evaluation: a table of cases from AWS's documented examples (ECR-REFERENCE 5.2) and properties
that must hold for any repository and any valid policy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.lifecycle.evaluate import ACTIVATING, ACTIVE, ARCHIVED, DAY, Action, Image, evaluate
from berth.lifecycle.policy import Policy, PolicyInvalid, parse

NOW = 1_800_000_000.0


def img(name: str, tags: tuple[str, ...] | list[str] = (), pushed: float = 1, pulled: float | None = None,
        status: str = ACTIVE, archived: float | None = None, children: tuple[str, ...] = (),
        subject: str | None = None) -> Image:
    """An image `pushed` days ago (pulled / archived days ago)."""
    return Image(name, tuple(tags), NOW - pushed * DAY, None if pulled is None else NOW - pulled * DAY, status,
                 None if archived is None else NOW - archived * DAY, children, subject)


def R(priority: int, sel: dict[str, Any], action: str = "expire") -> dict[str, Any]:  # noqa: N802
    act: dict[str, Any] = {"type": action}
    if action == "transition":
        act["targetStorageClass"] = "archive"
    return {"rulePriority": priority, "selection": sel, "action": act}


def count(status: str, n: int, **tags: Any) -> dict[str, Any]:
    return {"tagStatus": status, "countType": "imageCountMoreThan", "countNumber": n, **tags}


def since(kind: str, status: str, days: int, **more: Any) -> dict[str, Any]:
    return {"tagStatus": status, "countType": kind, "countUnit": "days", "countNumber": days, **more}


def policy(*rules: dict[str, Any], **top: Any) -> Policy:
    text = json.dumps({"rules": list(rules), **top})
    return parse(text.ljust(100))


# Example A / B of the ECR user guide's "multiple rules": images tagged in both families
AB = [img("A", ["beta-1", "prod-1"], 10), img("B", ["beta-2", "prod-2"], 9), img("C", ["beta-3"], 8)]
PROD = count("tagged", 1, tagPrefixList=["prod"])
BETA = count("tagged", 1, tagPrefixList=["beta"])
# "multiple tags in a single rule"
MULTI = [img("A", ["alpha-1"], 12), img("B", ["beta-1"], 11), img("C", ["alpha-2", "beta-2"], 10),
         img("D", ["alpha-3"], 4), img("E", ["alpha-4", "beta-3"], 3)]
EIGHT = [img(f"I{i}", [f"t{i}"] if i % 2 else [], 10 - i) for i in range(8)]  # I0 oldest .. I7 newest

CASES: list[tuple[str, list[Image], Policy, dict[str, tuple[str, int]]]] = [
    ("age: untagged older than 14 days expire",
     [img("old", [], 20), img("new", [], 3), img("tagged", ["v1"], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 14))), {"old": ("EXPIRE", 1)}),
    ("age: exactly at the limit is kept",
     [img("edge", [], 14), img("older", [], 14.01)],
     policy(R(1, since("sinceImagePushed", "untagged", 14))), {"older": ("EXPIRE", 1)}),
    ("count: keep one untagged image",
     [img("u1", [], 5), img("u2", [], 4), img("u3", [], 3)],
     policy(R(1, count("untagged", 1))), {"u1": ("EXPIRE", 1), "u2": ("EXPIRE", 1)}),
    ("count: fewer than N acts on nothing",
     [img("u1", [], 5)], policy(R(1, count("untagged", 3))), {}),
    ("example A: prod first shields beta images also tagged prod",
     AB, policy(R(1, PROD), R(2, BETA)), {"A": ("EXPIRE", 1)}),
    ("example B (the priority swap pitfall): beta first expires two",
     AB, policy(R(1, BETA), R(2, PROD)), {"A": ("EXPIRE", 1), "B": ("EXPIRE", 1)}),
    ("multiple prefixes in one rule are ANDed",
     MULTI, policy(R(1, count("tagged", 1, tagPrefixList=["alpha", "beta"]))), {"C": ("EXPIRE", 1)}),
    ("multiple patterns in one rule are ANDed",
     MULTI, policy(R(1, count("tagged", 1, tagPatternList=["alpha*", "beta*"]))), {"C": ("EXPIRE", 1)}),
    ("any: keep the five newest of all images",
     EIGHT, policy(R(1, count("any", 5))), {"I0": ("EXPIRE", 1), "I1": ("EXPIRE", 1), "I2": ("EXPIRE", 1)}),
    ("keep rule: tagged release images shielded from the any rule",
     [img("r1", ["release-1"], 50), img("x", ["dev"], 40), img("u", [], 30)],
     policy(R(1, count("tagged", 9999, tagPrefixList=["release"])), R(2, since("sinceImagePushed", "any", 7))),
     {"x": ("EXPIRE", 2), "u": ("EXPIRE", 2)}),
    ("shielded images still count toward a lower imageCountMoreThan",
     [img("p1", ["prod-1"], 5), img("d1", ["dev-1"], 4), img("d2", ["dev-2"], 3)],
     policy(R(1, count("tagged", 10, tagPrefixList=["prod"])), R(2, count("any", 2))), {}),
    ("counting includes shielded: the any rule keeps 1 and the prod image is the newest",
     [img("d1", ["dev-1"], 5), img("d2", ["dev-2"], 4), img("p1", ["prod-1"], 3)],
     policy(R(1, count("tagged", 10, tagPrefixList=["prod"])), R(2, count("any", 1))),
     {"d1": ("EXPIRE", 2), "d2": ("EXPIRE", 2)}),
    ("counting includes shielded: a shielded image past N is still not acted on",
     [img("p1", ["prod-1"], 9), img("d1", ["dev-1"], 2)],
     policy(R(1, count("tagged", 10, tagPrefixList=["prod"])), R(2, count("any", 1))), {}),
    ("pattern wildcard in the middle",
     [img("a", ["prod-x-release"], 5), img("b", ["prod-release-x"], 5), img("c", ["test"], 5)],
     policy(R(1, since("sinceImagePushed", "tagged", 1, tagPatternList=["prod*release"]))), {"a": ("EXPIRE", 1)}),
    ("pattern with four wildcards",
     [img("a", ["xtestx1x2x3"], 5), img("b", ["test123"], 5), img("c", ["tset123"], 5)],
     policy(R(1, since("sinceImagePushed", "tagged", 1, tagPatternList=["*test*1*2*3"]))),
     {"a": ("EXPIRE", 1), "b": ("EXPIRE", 1)}),
    ("prefix matches any of the image's tags",
     [img("a", ["latest", "prod-7"], 5)],
     policy(R(1, since("sinceImagePushed", "tagged", 1, tagPrefixList=["prod"]))), {"a": ("EXPIRE", 1)}),
    ("untagged rule leaves tagged images",
     [img("t", ["v1"], 100)], policy(R(1, since("sinceImagePushed", "untagged", 1))), {}),
    ("transition on last pull, never pulled uses push time",
     [img("cold", ["v1"], 100), img("warm", ["v2"], 100, pulled=3), img("young", ["v3"], 10)],
     policy(R(1, since("sinceImagePulled", "any", 30), "transition")), {"cold": ("TRANSITION", 1)}),
    ("transition leaves archived images alone",
     [img("a", ["v1"], 200, status=ARCHIVED, archived=100)],
     policy(R(1, since("sinceImagePushed", "any", 30), "transition")), {}),
    ("expire archived after 365 days archived",
     [img("a", ["v1"], 500, status=ARCHIVED, archived=400), img("b", ["v2"], 500, status=ARCHIVED, archived=100)],
     policy(R(1, since("sinceImageTransitioned", "any", 365, storageClass="archive"))), {"a": ("EXPIRE", 1)}),
    ("an archived image is not expired before 90 days archived",
     [img("a", ["v1"], 500, status=ARCHIVED, archived=60)],
     policy(R(1, since("sinceImageTransitioned", "any", 30, storageClass="archive"))), {}),
    ("a standard rule does not select archived images",
     [img("a", [], 500, status=ARCHIVED, archived=400), img("b", [], 500)],
     policy(R(1, since("sinceImagePushed", "untagged", 1))), {"b": ("EXPIRE", 1)}),
    ("an activating image is in no storage class",
     [img("a", [], 500, status=ACTIVATING)], policy(R(1, since("sinceImagePushed", "untagged", 1))), {}),
    ("two storage classes, one untagged rule each",
     [img("s", [], 50), img("z", [], 500, status=ARCHIVED, archived=200)],
     policy(R(1, since("sinceImageTransitioned", "untagged", 180, storageClass="archive")),
            R(2, since("sinceImagePushed", "untagged", 10), "transition")),
     {"z": ("EXPIRE", 1), "s": ("TRANSITION", 2)}),
    ("children of a kept index are kept",
     [img("idx", ["v1"], 1, children=("c1", "c2")), img("c1", [], 30), img("c2", [], 30), img("lone", [], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 7))), {"lone": ("EXPIRE", 1)}),
    ("children of an expired index go with it",
     [img("idx", [], 30, children=("c1", "c2")), img("c1", [], 30), img("c2", [], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 7))),
     {"idx": ("EXPIRE", 1), "c1": ("EXPIRE", 1), "c2": ("EXPIRE", 1)}),
    ("a child listed by a kept index and an expired one is kept",
     [img("old", [], 30, children=("c",)), img("new", ["v2"], 1, children=("c",)), img("c", [], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 7))), {"old": ("EXPIRE", 1)}),
    ("nested indexes: the grandchild of a kept index is kept",
     [img("top", ["v1"], 1, children=("mid",)), img("mid", [], 30, children=("leaf",)), img("leaf", [], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 7))), {}),
    ("a child is archived only with its index",
     [img("idx", ["v1"], 100, pulled=1, children=("c",)), img("c", [], 100)],
     policy(R(1, since("sinceImagePulled", "any", 30), "transition")), {}),
    ("a child of an already archived index may be archived",
     [img("idx", ["v1"], 100, status=ARCHIVED, archived=10, children=("c",)), img("c", [], 100)],
     policy(R(1, since("sinceImagePulled", "any", 30), "transition")), {"c": ("TRANSITION", 1)}),
    ("referrers are expired with their subject, not on their own",
     [img("app", [], 30), img("sig", [], 30, subject="app"), img("sbom", [], 1, subject="app"),
      img("sig-of-sbom", [], 1, subject="sbom"), img("kept", ["v1"], 30), img("ksig", [], 30, subject="kept")],
     policy(R(1, since("sinceImagePushed", "untagged", 7))),
     {"app": ("EXPIRE", 1), "sig": ("EXPIRE", 1), "sbom": ("EXPIRE", 1), "sig-of-sbom": ("EXPIRE", 1)}),
    ("a referrer a kept index lists stays when its subject is expired",
     [img("app", [], 30), img("sig", [], 30, subject="app"), img("idx", ["v1"], 1, children=("sig",))],
     policy(R(1, since("sinceImagePushed", "untagged", 7))), {"app": ("EXPIRE", 1)}),
    ("a referrer whose subject is absent is an ordinary image",
     [img("orphan", [], 30, subject="gone")], policy(R(1, since("sinceImagePushed", "untagged", 7))),
     {"orphan": ("EXPIRE", 1)}),
    ("a higher rule's keep of a tag family does not stop untagged expiry",
     [img("p", ["prod"], 40), img("u", [], 40)],
     policy(R(1, count("tagged", 1, tagPrefixList=["prod"])), R(2, since("sinceImagePushed", "untagged", 7))),
     {"u": ("EXPIRE", 2)}),
    ("non-contiguous priorities apply in order",
     [img("a", ["x-1"], 10), img("b", ["x-2"], 9)],
     policy(R(10, count("tagged", 1, tagPrefixList=["x"])), R(5, count("tagged", 5, tagPrefixList=["x"]))), {}),
    ("extension: expire on last pull",
     [img("cold", ["v1"], 100, pulled=40), img("warm", ["v2"], 100, pulled=2)],
     policy(R(1, since("sinceImagePulled", "any", 30))), {"cold": ("EXPIRE", 1)}),
    ("extension: tag regular expressions",
     [img("rel", ["v1.2.3"], 10), img("rc", ["v1.2.3-rc1"], 10)],
     policy(R(1, since("sinceImagePushed", "tagged", 1, tagRegexList=[r"v\d+\.\d+\.\d+-rc\d+"]))),
     {"rc": ("EXPIRE", 1)}),
    ("extension: images pulled recently are protected from expiry",
     [img("pulled", [], 30, pulled=2), img("idle", [], 30, pulled=20), img("never", [], 30)],
     policy(R(1, since("sinceImagePushed", "untagged", 7)), protectPulledWithinDays=7),
     {"idle": ("EXPIRE", 1), "never": ("EXPIRE", 1)}),
    ("extension: protection does not stop a transition",
     [img("pulled", ["v"], 30, pulled=2)],
     policy(R(1, since("sinceImagePushed", "any", 7), "transition"), protectPulledWithinDays=7),
     {"pulled": ("TRANSITION", 1)}),
]


@pytest.mark.parametrize(("name", "images", "pol", "expected"), CASES, ids=[c[0] for c in CASES])
def test_documented_cases(name: str, images: list[Image], pol: Policy, expected: dict[str, tuple[str, int]]) -> None:
    actions = evaluate(images, pol, NOW)
    assert {a.digest: (a.kind, a.rule_priority) for a in actions} == expected
    assert len({a.digest for a in actions}) == len(actions)  # at most one action per image


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def test_the_priority_swap_changes_the_survivors() -> None:
    survivors = [{i.digest for i in AB} - {a.digest for a in evaluate(AB, p, NOW)}
                 for p in (policy(R(1, PROD), R(2, BETA)), policy(R(1, BETA), R(2, PROD)))]
    assert survivors == [{"B", "C"}, {"C"}]


def test_actions_carry_what_the_preview_shows() -> None:
    [a] = evaluate([img("old", ["v1", "v2"], 20)], policy(R(3, since("sinceImagePushed", "any", 14), "transition")),
                   NOW)
    assert a == Action("old", "TRANSITION", 3, ("v1", "v2"), NOW - 20 * DAY, "STANDARD", "ARCHIVE")


def test_actions_come_in_priority_then_push_order() -> None:
    images = [img("u2", [], 9), img("u1", [], 10), img("t", ["x"], 20)]
    pol = policy(R(1, since("sinceImagePushed", "tagged", 1, tagPrefixList=["x"])),
                 R(2, since("sinceImagePushed", "untagged", 1)))
    assert [a.digest for a in evaluate(images, pol, NOW)] == ["t", "u1", "u2"]


def test_the_clock_decides() -> None:
    images = [img("a", [], 10)]
    pol = policy(R(1, since("sinceImagePushed", "untagged", 14)))
    assert evaluate(images, pol, NOW) == []
    assert [a.digest for a in evaluate(images, pol, NOW + 5 * DAY)] == ["a"]


# properties

TAGS = st.sampled_from(["prod-1", "prod-2", "beta-1", "beta-2", "v1.0", "latest", "dev"])


@st.composite
def repositories(draw: st.DrawFn) -> list[Image]:
    n = draw(st.integers(0, 14))
    names = [f"m{i}" for i in range(n)]
    out: list[Image] = []
    for i, name in enumerate(names):
        earlier = names[:i]
        children = tuple(sorted(draw(st.sets(st.sampled_from(earlier), max_size=3)))) if earlier and \
            draw(st.booleans()) else ()
        subject = draw(st.sampled_from(earlier)) if earlier and not children and draw(st.integers(0, 4)) == 0 \
            else None
        status = draw(st.sampled_from([ACTIVE, ACTIVE, ACTIVE, ARCHIVED, ACTIVATING]))
        out.append(img(name, sorted(draw(st.sets(TAGS, max_size=3))), draw(st.integers(0, 400)),
                       draw(st.none() | st.integers(0, 400)), status,
                       draw(st.integers(0, 300)) if status == ARCHIVED else None, children, subject))
    return out


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(["tagged", "untagged", "any"]))
    sel: dict[str, Any] = {"tagStatus": status}
    if status == "tagged":
        key = draw(st.sampled_from(["tagPrefixList", "tagPatternList", "tagRegexList"]))
        values = {"tagPrefixList": ["prod", "beta", "v", "l"], "tagPatternList": ["prod*", "*-1", "*e*", "v1.0"],
                  "tagRegexList": [r"prod-\d", r"beta-.*", "latest"]}[key]
        sel[key] = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
    kind = draw(st.sampled_from(["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled",
                                 "sinceImageTransitioned"]))
    sel["countType"] = kind
    sel["countNumber"] = draw(st.integers(1, 200))
    if kind != "imageCountMoreThan":
        sel["countUnit"] = "days"
    action = "expire"
    if kind == "sinceImageTransitioned":
        sel["storageClass"] = "archive"
    elif draw(st.booleans()):
        action = "transition"
    return R(0, sel, action)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    drawn = draw(st.lists(rules(), min_size=1, max_size=5))
    priorities = sorted(draw(st.sets(st.integers(1, 100), min_size=len(drawn), max_size=len(drawn))))
    for r, p in zip(drawn, priorities, strict=True):
        r["rulePriority"] = p
    protect = draw(st.none() | st.integers(1, 60))
    try:
        return policy(*drawn, **({} if protect is None else {"protectPulledWithinDays": protect}))
    except PolicyInvalid:  # a cross-rule conflict (two untagged rules, 'any' not last): drop the later rules
        return policy(drawn[0])


def apply(images: list[Image], actions: list[Action]) -> list[Image]:
    """What the repository holds after the actions (the run's effect, modelled)."""
    gone = {a.digest for a in actions if a.kind == "EXPIRE"}
    archived = {a.digest for a in actions if a.kind == "TRANSITION"}
    return [Image(i.digest, i.tags, i.pushed_at, i.last_pulled_at, ARCHIVED, NOW, i.children, i.subject)
            if i.digest in archived else i for i in images if i.digest not in gone]


@settings(max_examples=400)
@given(repositories(), policies())
def test_properties(images: list[Image], pol: Policy) -> None:
    actions = evaluate(images, pol, NOW)
    # deterministic: the preview and the run (same function, same snapshot, same clock) agree
    assert evaluate(list(images), pol, NOW) == actions
    assert len({a.digest for a in actions}) == len(actions)
    by_digest = {i.digest: i for i in images}
    acted = {a.digest: a for a in actions}
    # no image a higher-priority rule selects is acted on by a lower one (referrers follow their subject)
    for a in actions:
        if a.referrer_of is not None:
            continue
        for rule in pol.rules:
            if rule.priority >= a.rule_priority:
                break
            image = by_digest[a.digest]
            wanted = ARCHIVED if rule.selection.storage_class == "archive" else ACTIVE
            assert not (image.status == wanted and rule.selection.matches_tags(image.tags)), (a, rule)
    # nothing a kept index references is removed; nothing an active kept index references is archived
    after = {i.digest: i for i in apply(images, actions)}
    for i in after.values():
        for c in i.children:
            if c in by_digest:
                assert c in after, f"{c} removed while {i.digest} lists it"
                if i.status == ACTIVE and c in acted:
                    assert acted[c].kind != "TRANSITION" or i.digest in acted
    # referrers of an expired subject are gone with it, unless a kept index lists them
    for i in images:
        if i.subject in by_digest and i.subject not in after and i.subject != i.digest:
            assert i.digest not in after or any(i.digest in p.children for p in after.values())
    # an archived image is never expired before 90 days archived; ACTIVATING ones are never touched
    for a in actions:
        image = by_digest[a.digest]
        if a.kind == "EXPIRE" and image.status == ARCHIVED and a.referrer_of is None:
            assert image.archived_at is not None and image.archived_at <= NOW - 90 * DAY
        if a.referrer_of is None:
            assert image.status != ACTIVATING
