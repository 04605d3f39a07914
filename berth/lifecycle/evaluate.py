"""The evaluation of a lifecycle policy: one pure function, the clock passed in.

The preview and the real run both call `evaluate`, so what a preview shows is exactly what a run does.
Semantics, as AWS documents them (ECR-REFERENCE 5.2):
- every rule is evaluated against the whole repository, then the rules are applied in priority order;
- an image is acted on by at most one rule; an image a rule selects (tags and storage class) is shielded
  from every lower-priority rule even if that rule keeps it, and is still counted by them;
- imageCountMoreThan keeps the N most recently pushed and acts on the rest;
- an image referenced by an index that is kept is kept (expired only with its index, archived only with
  it or after it);
- referrers (signatures, SBOMs, attestations) follow their subject: no rule selects them, and they are
  expired with it;
- an archived image is not expired before it has been archived 90 days;
- Berth's protectPulledWithinDays: no expiry of an image pulled within that many days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from berth.lifecycle.policy import (
    ARCHIVE,
    COUNT_MORE_THAN,
    EXPIRE,
    SINCE_PULLED,
    SINCE_PUSHED,
    SINCE_TRANSITIONED,
    Policy,
    Rule,
)

DAY = 86_400.0
MIN_ARCHIVE_DAYS = 90

ACTIVE, ARCHIVED, ACTIVATING = "ACTIVE", "ARCHIVED", "ACTIVATING"


@dataclass(frozen=True, slots=True)
class Image:
    """What the evaluation knows of one image (a manifest) of the repository."""

    digest: str
    tags: tuple[str, ...] = ()
    pushed_at: float = 0.0
    last_pulled_at: float | None = None
    status: str = ACTIVE  # ACTIVE (storage class standard) | ARCHIVED | ACTIVATING (in neither class)
    archived_at: float | None = None
    children: tuple[str, ...] = ()  # the manifests an index lists
    subject: str | None = None  # the manifest this one refers to

    @property
    def storage_class(self) -> str:
        return "ARCHIVE" if self.status == ARCHIVED else "STANDARD"


@dataclass(frozen=True, slots=True)
class Action:
    digest: str
    kind: str  # EXPIRE | TRANSITION
    rule_priority: int
    tags: tuple[str, ...] = ()
    pushed_at: float = 0.0
    storage_class: str = "STANDARD"  # the image's class when evaluated
    target_storage_class: str | None = None  # ARCHIVE for a transition
    referrer_of: str | None = None  # expired with this subject


@dataclass
class _State:
    by_digest: dict[str, Image]
    parents: dict[str, set[str]] = field(default_factory=dict)
    referrers: dict[str, list[str]] = field(default_factory=dict)


def _index(images: Sequence[Image]) -> _State:
    st = _State({i.digest: i for i in images})
    for i in images:
        for c in i.children:
            if c in st.by_digest:
                st.parents.setdefault(c, set()).add(i.digest)
        if i.subject is not None and i.subject in st.by_digest and i.subject != i.digest:
            st.referrers.setdefault(i.subject, []).append(i.digest)
    return st


def _selects(rule: Rule, image: Image) -> bool:
    """The rule's tag and storage-class requirements (what shields an image from lower rules)."""
    wanted = ARCHIVED if rule.selection.storage_class == ARCHIVE else ACTIVE
    return image.status == wanted and rule.selection.matches_tags(image.tags)


def _newest_first(images: Iterable[Image]) -> list[Image]:
    return sorted(images, key=lambda i: (-i.pushed_at, i.digest))


def _oldest_first(images: Iterable[Image]) -> list[Image]:
    return sorted(images, key=lambda i: (i.pushed_at, i.digest))


def _marked(rule: Rule, matched: list[Image], now: float) -> list[Image]:
    """The images of `matched` the rule's count acts on, oldest first."""
    s = rule.selection
    if s.count_type == COUNT_MORE_THAN:
        return _oldest_first(_newest_first(matched)[s.count_number:])
    limit = now - s.count_number * DAY
    if s.count_type == SINCE_PUSHED:
        return _oldest_first(i for i in matched if i.pushed_at < limit)
    if s.count_type == SINCE_PULLED:
        return _oldest_first(i for i in matched if (i.last_pulled_at or i.pushed_at) < limit)
    if s.count_type == SINCE_TRANSITIONED:
        return _oldest_first(i for i in matched if i.archived_at is not None and i.archived_at < limit)
    raise ValueError(f"unknown countType {s.count_type!r}")


def evaluate(images: Sequence[Image], policy: Policy, now: float) -> list[Action]:
    """The actions `policy` takes on the repository `images` at time `now`, in the order to apply them
    (by rule priority, oldest push first), each image at most once; referrers right after their subject."""
    st = _index(images)
    candidates = [i for i in images if i.status != ACTIVATING and not _follows_subject(i, st)]
    shielded: set[str] = set()
    chosen: dict[str, tuple[Rule, Image]] = {}
    for rule in policy.rules:  # already in priority order
        matched = [i for i in candidates if _selects(rule, i)]  # counted even if shielded
        for image in _marked(rule, matched, now):
            if image.digest not in shielded and _allowed(rule, image, policy, now):
                chosen[image.digest] = (rule, image)
        shielded.update(i.digest for i in matched)
    _keep_what_kept_indexes_use(chosen, st)
    actions: list[Action] = []
    for rule, image in sorted(chosen.values(), key=lambda ri: (ri[0].priority, ri[1].pushed_at, ri[1].digest)):
        actions.append(_action(rule, image))
        if rule.action == EXPIRE:
            actions += [_action(rule, st.by_digest[d], referrer_of=image.digest)
                        for d in _referrers(image.digest, st) if d not in chosen]
    return _keep_what_kept_images_need(_unique(actions), st)


def _follows_subject(image: Image, st: _State) -> bool:
    return image.subject is not None and image.subject in st.by_digest and image.subject != image.digest


def _allowed(rule: Rule, image: Image, policy: Policy, now: float) -> bool:
    if rule.action != EXPIRE:
        return True
    if image.status == ARCHIVED and (image.archived_at is None or image.archived_at > now - MIN_ARCHIVE_DAYS * DAY):
        return False
    days = policy.protect_pulled_within_days
    return not (days is not None and image.last_pulled_at is not None and image.last_pulled_at >= now - days * DAY)


def _keep_what_kept_indexes_use(chosen: dict[str, tuple[Rule, Image]], st: _State) -> None:
    """Drop each action an index forbids: a child is expired only if every index listing it is expired,
    archived only if every such index is expired, archived now, or archived already. To a fixpoint (nested
    indexes: dropping an index's action can forbid its children's)."""
    changed = True
    while changed:
        changed = False
        for digest, (rule, _) in list(chosen.items()):
            for parent in st.parents.get(digest, ()):
                if parent == digest:
                    continue
                taken = chosen.get(parent)
                if rule.action == EXPIRE:
                    ok = taken is not None and taken[0].action == EXPIRE
                else:
                    ok = taken is not None or st.by_digest[parent].status == ARCHIVED
                if not ok:
                    del chosen[digest]
                    changed = True
                    break


def _keep_what_kept_images_need(actions: list[Action], st: _State) -> list[Action]:
    """Drop a referrer's expiry when a kept index lists it, and then those of its own referrers (they follow
    it): to a fixpoint."""
    expired = {a.digest for a in actions if a.kind == "EXPIRE"}
    changed = True
    while changed:
        changed = False
        for a in actions:
            if a.kind != "EXPIRE" or a.digest not in expired:
                continue
            image = st.by_digest[a.digest]
            kept_parent = any(p not in expired for p in st.parents.get(a.digest, ()) if p != a.digest)
            kept_subject = a.referrer_of is not None and image.subject is not None and image.subject not in expired
            if kept_parent or kept_subject:
                expired.discard(a.digest)
                changed = True
    return [a for a in actions if a.kind != "EXPIRE" or a.digest in expired]


def _referrers(subject: str, st: _State) -> list[str]:
    """Every manifest that refers to `subject`, directly or through another referrer, deepest first."""
    out: list[str] = []
    seen = {subject}

    def walk(d: str) -> None:
        for r in sorted(st.referrers.get(d, ())):
            if r not in seen:
                seen.add(r)
                walk(r)
                out.append(r)

    walk(subject)
    return out


def _action(rule: Rule, image: Image, referrer_of: str | None = None) -> Action:
    return Action(image.digest, rule.action.upper(), rule.priority, image.tags, image.pushed_at, image.storage_class,
                  None if rule.target_storage_class is None else rule.target_storage_class.upper(), referrer_of)


def _unique(actions: list[Action]) -> list[Action]:
    seen: set[str] = set()
    out: list[Action] = []
    for a in actions:
        if a.digest not in seen:
            seen.add(a.digest)
            out.append(a)
    return out
