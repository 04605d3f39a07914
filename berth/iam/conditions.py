"""The Condition element of the IAM policy language: parsing and pure evaluation.

Semantics, as AWS documents them:
- several operators in a block, and several keys under one operator, are ANDed;
- several values for one key are ORed; for a negated operator (StringNotEquals, NotIpAddress,
  ArnNotLike, …) the request value must match none of them (NOR);
- a key absent from the request makes the condition false, except: `…IfExists` (true), negated
  operators (true: "the key is not matched"), `Null` (tests presence) and `ForAllValues:` (true);
- `ForAnyValue:` needs at least one request value to match, `ForAllValues:` every request value;
- condition keys and operator names are case-insensitive;
- policy variables are substituted in the values of String, Arn and Bool operators; a variable
  with no value (and no default) makes its condition false.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from berth.iam.policy_patterns import PolicyError, Template, compile_pattern, parse_template

__all__ = ["Clause", "EvalContext", "parse_conditions", "parse_date"]


class EvalContext:
    """The request context: keys lower-cased once, values as tuples of strings (empty = absent)."""

    __slots__ = ("_values",)

    def __init__(self, context: Mapping[str, object]) -> None:
        self._values: dict[str, tuple[str, ...]] = {
            key.lower(): (value,) if type(value) is str else _context_values(value)
            for key, value in context.items()
        }

    def get(self, key: str) -> tuple[str, ...]:
        """The values of a (lower-cased) key; an empty tuple when the key is absent or empty."""
        return self._values.get(key, ())

    def setdefault(self, key: str, value: str) -> None:
        """Set a (lower-cased) key unless the request already has a value for it."""
        if not self._values.get(key):
            self._values[key] = (value,)

    def resolve(self, key: str) -> str | None:
        """The value of a policy variable: single-valued keys only, as AWS does."""
        values = self._values.get(key)
        if values is None or len(values) != 1:
            return None
        return values[0]


def _context_values(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, int | float):
        return (str(value),)
    if isinstance(value, Sequence | set | frozenset):
        return tuple(v for item in value for v in _context_values(item))
    raise TypeError(f"context values must be strings or lists of strings, not {type(value).__name__}")


# --- value types -------------------------------------------------------------------------------


def parse_date(text: str) -> float:
    """A date as AWS accepts it in conditions: ISO 8601 (UTC when no offset) or epoch seconds."""
    s = text.strip()
    try:
        epoch = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch):
            raise ValueError(f"not a date: {text!r}")
        return epoch
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or epoch seconds: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _number(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(f"not a number: {text!r}")
    return value


def _bool(text: str) -> str:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"not a boolean: {text!r}")
    return value


def _binary(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"not base64: {text!r}") from None


def _network(text: str) -> tuple[int, int, int]:
    """A CIDR (or a single address) as (version, network bits, mask bits)."""
    net = ipaddress.ip_network(text.strip(), strict=False)
    return net.version, int(net.network_address), int(net.netmask)


def _address(text: str) -> tuple[int, int]:
    """An address as (version, bits); inet_pton is several times faster than ipaddress here."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        pass
    try:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None


def _same(text: str) -> str:
    return text


def _fold(text: str) -> str:
    return text.casefold()


@dataclass(frozen=True, slots=True)
class _Operator:
    name: str
    prepare: Callable[[str], Any]  # policy value -> comparable (raises ValueError)
    coerce: Callable[[str], Any]  # request value -> comparable (raises ValueError)
    test: Callable[[Any, Any], bool]  # (request value, policy value) -> match
    negated: bool = False
    variables: bool = False  # policy variables allowed in values
    pattern: str = ""  # "glob" or "arn": values are wildcard patterns


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return bool(a <= b)


def _gt(a: Any, b: Any) -> bool:
    return bool(a > b)


def _ge(a: Any, b: Any) -> bool:
    return bool(a >= b)


def _matches(a: str, pattern: re.Pattern[str]) -> bool:
    return pattern.fullmatch(a) is not None


def _in_network(address: tuple[int, int], network: tuple[int, int, int]) -> bool:
    return address[0] == network[0] and address[1] & network[2] == network[1]


def _operators() -> dict[str, _Operator]:
    ops: list[_Operator] = [
        _Operator("StringEquals", _same, _same, _eq, variables=True),
        _Operator("StringNotEquals", _same, _same, _eq, negated=True, variables=True),
        _Operator("StringEqualsIgnoreCase", _fold, _fold, _eq, variables=True),
        _Operator("StringNotEqualsIgnoreCase", _fold, _fold, _eq, negated=True, variables=True),
        _Operator("StringLike", _same, _same, _matches, variables=True, pattern="glob"),
        _Operator("StringNotLike", _same, _same, _matches, negated=True, variables=True, pattern="glob"),
        _Operator("Bool", _bool, _bool, _eq, variables=True),
        _Operator("BinaryEquals", _binary, _binary, _eq),
        _Operator("IpAddress", _network, _address, _in_network),
        _Operator("NotIpAddress", _network, _address, _in_network, negated=True),
        _Operator("ArnEquals", _same, _same, _matches, variables=True, pattern="arn"),
        _Operator("ArnLike", _same, _same, _matches, variables=True, pattern="arn"),
        _Operator("ArnNotEquals", _same, _same, _matches, negated=True, variables=True, pattern="arn"),
        _Operator("ArnNotLike", _same, _same, _matches, negated=True, variables=True, pattern="arn"),
    ]
    for family, parse in (("Numeric", _number), ("Date", parse_date)):
        ops += [
            _Operator(f"{family}Equals", parse, parse, _eq),
            _Operator(f"{family}NotEquals", parse, parse, _eq, negated=True),
            _Operator(f"{family}LessThan", parse, parse, _lt),
            _Operator(f"{family}LessThanEquals", parse, parse, _le),
            _Operator(f"{family}GreaterThan", parse, parse, _gt),
            _Operator(f"{family}GreaterThanEquals", parse, parse, _ge),
        ]
    return {op.name.lower(): op for op in ops}


_OPERATORS = _operators()
_NULL = "null"
_ANY, _ALL = 1, 2
_SET_PREFIXES = {"foranyvalue:": _ANY, "forallvalues:": _ALL}
_IF_EXISTS = "ifexists"
_KEY = re.compile(r"^[A-Za-z0-9_./-]+:\S+$")  # also <issuer host/path>:sub, as EKS and CI issuers name them


# --- clauses -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Clause:
    """One (operator, key) pair of a Condition block with its values, prepared once."""

    operator: str  # as written in the policy
    key: str  # lower-cased
    op: _Operator | None  # None: Null
    set_op: int
    if_exists: bool
    values: tuple[Any, ...]  # prepared values; a Template where a variable needs the request
    dynamic: bool

    def evaluate(self, ctx: EvalContext) -> bool:
        request_values = ctx.get(self.key)
        op = self.op
        if op is None:  # Null: "true" holds when the key is absent
            return (not request_values) in self.values
        if not request_values:
            if self.set_op == _ALL or self.if_exists:
                return True
            if self.set_op == _ANY:
                return False
            return op.negated
        policy_values = self._resolved(ctx) if self.dynamic else self.values
        if policy_values is None:
            return False
        negated = op.negated
        if self.set_op == _ALL:
            return all(self._hit(op, v, policy_values) != negated for v in request_values)
        if self.set_op == _ANY:
            return any(self._hit(op, v, policy_values) != negated for v in request_values)
        return any(self._hit(op, v, policy_values) for v in request_values) != negated

    @staticmethod
    def _hit(op: _Operator, request_value: str, policy_values: tuple[Any, ...]) -> bool:
        try:
            value = op.coerce(request_value)
        except ValueError:
            return False
        test = op.test
        return any(test(value, p) for p in policy_values)

    def _resolved(self, ctx: EvalContext) -> tuple[Any, ...] | None:
        op = self.op
        assert op is not None
        out = []
        for value in self.values:
            if not isinstance(value, Template):
                out.append(value)
                continue
            segments = value.segments(ctx.resolve)
            if segments is None:
                return None  # a variable with no value: the condition cannot hold
            if op.pattern:
                out.append(compile_pattern(segments, arn=op.pattern == "arn"))
            else:
                try:
                    out.append(op.prepare("".join(t for t, _ in segments)))
                except ValueError:
                    return None
        return tuple(out)


def _value_text(operator: str, key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise PolicyError(
        f"Condition {operator} {key}: values must be strings, numbers or booleans, not {_json_type(value)}"
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _split_operator(name: str) -> tuple[_Operator | None, int, bool]:
    lowered = name.lower()
    set_op = 0
    for prefix, kind in _SET_PREFIXES.items():
        if lowered.startswith(prefix):
            set_op = kind
            lowered = lowered[len(prefix) :]
            break
    if_exists = False
    if lowered not in _OPERATORS and lowered != _NULL and lowered.endswith(_IF_EXISTS):
        if_exists = True
        lowered = lowered[: -len(_IF_EXISTS)]
    if lowered == _NULL:
        if set_op or if_exists:
            raise PolicyError(f"Condition operator {name!r} is not valid: Null takes no prefix or suffix")
        return None, 0, False
    op = _OPERATORS.get(lowered)
    if op is None:
        raise PolicyError(f"unknown Condition operator {name!r}")
    return op, set_op, if_exists


def _prepare(op: _Operator, operator: str, key: str, text: str, *, variables: bool) -> tuple[Any, bool]:
    """A policy value prepared for matching, and whether it needs the request (a variable)."""
    template = parse_template(text, variables=variables and op.variables)
    if not template.is_static:
        return template, True
    try:
        if op.pattern:
            segments = template.segments()
            assert segments is not None
            return compile_pattern(segments, arn=op.pattern == "arn"), False
        return op.prepare(template.text() or ""), False
    except ValueError as exc:
        raise PolicyError(f"Condition {operator} {key}: invalid value {text!r} ({exc})") from None


def parse_conditions(block: object, *, variables: bool) -> tuple[Clause, ...]:
    """Parse a statement's Condition element into clauses (all must hold)."""
    if not isinstance(block, Mapping):
        raise PolicyError(f"Condition must be an object, not {_json_type(block)}")
    clauses: list[Clause] = []
    for operator, keys in block.items():
        op, set_op, if_exists = _split_operator(operator)
        if not isinstance(keys, Mapping):
            raise PolicyError(
                f"Condition {operator} must map condition keys to values, not {_json_type(keys)}"
            )
        for key, raw in keys.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise PolicyError(
                    f"Condition {operator}: invalid condition key {key!r} "
                    "(expected service:name, e.g. aws:SourceIp)"
                )
            raw_values = raw if isinstance(raw, list) else [raw]
            if not raw_values:
                raise PolicyError(f"Condition {operator} {key}: no values")
            texts = [_value_text(operator, key, v) for v in raw_values]
            if op is None:
                flags = []
                for text in texts:
                    try:
                        flags.append(_bool(text) == "true")
                    except ValueError:
                        raise PolicyError(
                            f"Condition Null {key}: value must be true or false, not {text!r}"
                        ) from None
                clauses.append(Clause(operator, key.lower(), None, 0, False, tuple(flags), False))
                continue
            prepared = [_prepare(op, operator, key, t, variables=variables) for t in texts]
            clauses.append(
                Clause(
                    operator,
                    key.lower(),
                    op,
                    set_op,
                    if_exists,
                    tuple(v for v, _ in prepared),
                    any(d for _, d in prepared),
                )
            )
    return tuple(clauses)
