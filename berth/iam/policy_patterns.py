"""Wildcard patterns and policy variables of the IAM policy language (pure, no I/O).

A policy string (a Resource, a condition value) is parsed once into a `Template`: literal pattern
text interleaved with policy variables (`${aws:username}`, `${aws:username, 'default'}`) and the
escapes `${*}`, `${?}`, `${$}`. Substituting a request context yields `Segment`s; text that came
from a variable or an escape is literal, so a user name can never act as a wildcard.

Patterns are compiled to anchored regular expressions (`*` and `?` only; every other character,
`[` included, is literal). In ARN mode a wildcard stays inside its colon-delimited component, as
AWS documents for ARN matching, except in the last component (the resource), where it may span
colons; a pattern with fewer than six components lets its last component run to the end.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "PolicyError",
    "Segment",
    "Template",
    "compile_pattern",
    "compile_patterns",
    "has_wildcard",
    "parse_template",
]


class PolicyError(ValueError):
    """A policy document is malformed or uses something the language does not allow."""


Segment = tuple[str, bool]
"""(text, literal): literal text never acts as a wildcard."""

# Looks a variable up (key already lower-cased) and answers its single value, or None.
Resolver = Callable[[str], "str | None"]

_VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_VARIABLE_BODY = re.compile(r"^\s*([A-Za-z0-9_.-]+:[^\s,']+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?$")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}

_RAW, _LITERAL, _VAR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Template:
    """A policy string: raw pattern text, literal escapes and policy variables."""

    source: str
    # (kind, text, default): _RAW text, _LITERAL text, or _VAR with text = lower-cased key.
    parts: tuple[tuple[int, str, str | None], ...]

    @property
    def is_static(self) -> bool:
        return all(kind != _VAR for kind, _, _ in self.parts)

    def segments(self, resolve: Resolver | None = None) -> list[Segment] | None:
        """The text with variables substituted, or None when a variable has no value."""
        out: list[Segment] = []
        for kind, text, default in self.parts:
            if kind == _RAW:
                out.append((text, False))
            elif kind == _LITERAL:
                out.append((text, True))
            else:
                value = resolve(text) if resolve is not None else None
                if value is None:
                    if default is None:
                        return None
                    value = default
                out.append((value, True))
        return out

    def text(self, resolve: Resolver | None = None) -> str | None:
        segs = self.segments(resolve)
        return None if segs is None else "".join(t for t, _ in segs)


def parse_template(source: str, *, variables: bool) -> Template:
    """Parse a policy string. With `variables` False (Version 2008-10-17) `${…}` is plain text."""
    if not variables or "${" not in source:
        return Template(source, ((_RAW, source, None),))
    parts: list[tuple[int, str, str | None]] = []
    pos = 0
    for m in _VARIABLE.finditer(source):
        if m.start() > pos:
            parts.append((_RAW, source[pos : m.start()], None))
        body = m.group(1)
        if body in _ESCAPES:
            parts.append((_LITERAL, _ESCAPES[body], None))
        else:
            vm = _VARIABLE_BODY.match(body)
            if vm is None:
                raise PolicyError(f"invalid policy variable {m.group(0)!r} in {source!r}")
            default = vm.group(2).replace("''", "'") if vm.group(2) is not None else None
            parts.append((_VAR, vm.group(1).lower(), default))
        pos = m.end()
    if pos < len(source):
        parts.append((_RAW, source[pos:], None))
    return Template(source, tuple(parts))


def has_wildcard(segments: Sequence[Segment]) -> bool:
    return any(not lit and ("*" in text or "?" in text) for text, lit in segments)


def pattern_regex(segments: Sequence[Segment], *, arn: bool) -> str:
    """The regular expression (unanchored source) for a wildcard pattern."""
    colons_total = sum(text.count(":") for text, _ in segments) if arn else 0
    last_component = min(5, colons_total)
    out: list[str] = []
    colons = 0
    for text, literal in segments:
        if literal:
            out.append(re.escape(text))
            colons += text.count(":")
            continue
        for ch in text:
            if ch == "*" or ch == "?":
                spans = not arn or colons >= last_component
                if ch == "*":
                    out.append(".*" if spans else "[^:]*")
                else:
                    out.append("." if spans else "[^:]")
            else:
                if ch == ":":
                    colons += 1
                out.append(re.escape(ch))
    return "".join(out)


def compile_patterns(
    alternatives: Sequence[Sequence[Segment]], *, arn: bool = False, ignore_case: bool = False
) -> re.Pattern[str]:
    """Compile patterns as one alternation, for `fullmatch`; an empty list matches nothing.

    `arn=True` makes ARN-shaped patterns (starting `arn:`) component-aware; others stay plain.
    """
    sources = []
    for alt in alternatives:
        is_arn = arn and "".join(t for t, _ in alt).startswith("arn:")
        sources.append(pattern_regex(alt, arn=is_arn))
    if not sources:
        return re.compile(r"(?!)")
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("|".join(sources) if len(sources) == 1 else "(?:" + "|".join(sources) + ")", flags)


def compile_pattern(
    segments: Sequence[Segment], *, arn: bool = False, ignore_case: bool = False
) -> re.Pattern[str]:
    """Compile one pattern; memoised, since patterns with variables are compiled per request."""
    return _compile_one(tuple(segments), arn, ignore_case)


@functools.lru_cache(maxsize=4096)
def _compile_one(segments: tuple[Segment, ...], arn: bool, ignore_case: bool) -> re.Pattern[str]:
    return compile_patterns([segments], arn=arn, ignore_case=ignore_case)
