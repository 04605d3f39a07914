"""The IAM and STS wire contracts, read from botocore's own service models.

A query-protocol request is a flat form: ``Action=CreateUser&Version=2010-05-08&UserName=bob``.
This module reads it, picks the service (the SigV4 scope's service, else the Version), and checks
the parameters against the operation's input shape as IAM does: every constraint problem
(required, enum, pattern, length, range) collected into one ``ValidationError`` with AWS's
"1 validation error detected: Value ... at 'userName' failed to satisfy constraint: ..." text.

A parameter outside the model, or one of the model's that Berth does not implement (tags,
permissions boundaries), is refused rather than ignored: the real clients never send the first,
and ignoring the second would silently drop a feature the caller asked for.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl

from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel, Shape

SERVICES = ("iam", "sts")
_MAX_RENDERED_VALUE = 1024


class QueryError(Exception):
    """A wire-level failure: ``code`` is the AWS error code sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@functools.cache
def service_model(service: str) -> ServiceModel:
    loader = create_loader()
    return ServiceModel(loader.load_service_model(service, "service-2"), service_name=service)


def api_version(service: str) -> str:
    return str(service_model(service).metadata["apiVersion"])


def namespace(service: str) -> str:
    return str(service_model(service).metadata["xmlNamespace"])


def service_for_version(version: str | None) -> str | None:
    for service in SERVICES:
        if version == api_version(service):
            return service
    return None


def operation_model(service: str, op: str) -> OperationModel | None:
    model = service_model(service)
    return model.operation_model(op) if op in model.operation_names else None


def parse_form(body: bytes, query: str) -> dict[str, str]:
    """The request's parameters: the form body, plus the URL query minus SigV4's X-Amz-* fields."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
        pairs += [(k, v) for k, v in parse_qsl(query, keep_blank_values=True, errors="strict")
                  if not k.startswith("X-Amz-")]
    except (UnicodeDecodeError, ValueError) as e:
        raise QueryError("MalformedQueryString", f"The query string is not valid UTF-8 form data: {e}") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise QueryError("MalformedQueryString", f"The parameter {key} is given more than once.")
        params[key] = value
    return params


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    # Java regexes, where \w is ASCII-only; \p{..} classes (tags only) are not Python's.
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        return None


_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_TAG_PATTERNS = ("[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+", "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*")


def _matches(pattern: str, value: str) -> bool:
    """The model's pattern (a Java regex) matches `value`; the tag patterns' Unicode classes (letters,
    separators, numbers), which Python's re lacks, are checked by category."""
    if pattern in _TAG_PATTERNS:
        return all(c in _TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in value)
    compiled = _pattern(pattern)
    return compiled is None or compiled.fullmatch(value) is not None


def _pattern_problem(shape: Shape, value: str, where: str) -> str | None:
    pattern = shape.metadata.get("pattern")
    if pattern and not _matches(pattern, value):
        return (f"Value {_render(value)} at '{where}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}")
    return None


def _render(value: str | None) -> str:
    if value is None:
        return "null"
    if len(value) > _MAX_RENDERED_VALUE:
        value = value[:_MAX_RENDERED_VALUE] + "..."
    return f"'{value}'"


def _length(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2  # Java counts UTF-16 units


def _wire_name(member: str) -> str:
    return member[:1].lower() + member[1:]  # IAM names members in lowerCamelCase in its messages


def _bounds(shape: Shape, size: int, what: str) -> str | None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        return f"Member must have {what} greater than or equal to {low}"
    if high is not None and size > high:
        return f"Member must have {what} less than or equal to {high}"
    return None


def validate(op: OperationModel, raw: dict[str, str], supported: frozenset[str]) -> dict[str, Any]:
    """The operation's parameters, typed (str, int, bool), or QueryError("ValidationError")."""
    shape = op.input_shape
    members = dict(shape.members) if shape is not None else {}
    required = set(shape.required_members) if shape is not None else set()
    problems: list[str] = []
    params: dict[str, Any] = {}
    lists: dict[str, dict[int, str]] = {}
    structs: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in raw.items():
        if key in ("Action", "Version"):
            continue
        top = key.split(".", 1)[0]
        if top not in members:
            raise QueryError("ValidationError", f"Unknown parameter {key} for the operation {op.name}.")
        if top not in supported:
            raise QueryError("ValidationError", f"Berth does not support the parameter {top} of {op.name} yet.")
        member = members[top]
        if member.type_name == "list" and member.member.type_name == "string":  # X.member.N, or X= for []
            m = re.fullmatch(rf"{re.escape(top)}\.member\.([1-9]\d{{0,3}})", key)
            if m is not None:
                lists.setdefault(top, {})[int(m.group(1))] = value
                continue
            if key == top and value == "":
                lists.setdefault(top, {})
                continue
        if member.type_name == "list" and member.member.type_name == "structure":  # X.member.N.Field (Tags)
            m = re.fullmatch(rf"{re.escape(top)}\.member\.([1-9]\d{{0,3}})\.(\w+)", key)
            fields = member.member.members
            if m is not None and m.group(2) in fields and fields[m.group(2)].type_name == "string":
                structs.setdefault(top, {}).setdefault(int(m.group(1)), {})[m.group(2)] = value
                continue
        if key != top or member.type_name not in ("string", "integer", "boolean"):
            raise QueryError("ValidationError", f"Unexpected parameter {key} for the operation {op.name}.")
        where = _wire_name(top)
        if member.type_name == "integer":
            try:
                number = int(value)
            except ValueError:
                problems.append(f"Value {_render(value)} at '{where}' failed to satisfy constraint: "
                                "Member must be an integer")
                continue
            problem = _bounds(member, number, "value")
            if problem:
                problems.append(f"Value '{number}' at '{where}' failed to satisfy constraint: {problem}")
            params[top] = number
        elif member.type_name == "boolean":
            if value not in ("true", "false"):
                problems.append(f"Value {_render(value)} at '{where}' failed to satisfy constraint: "
                                "Member must be true or false")
                continue
            params[top] = value == "true"
        else:
            if member.enum and value not in member.enum:
                problems.append(f"Value {_render(value)} at '{where}' failed to satisfy constraint: "
                                f"Member must satisfy enum value set: [{', '.join(member.enum)}]")
            problem = _pattern_problem(member, value, where)
            if problem:
                problems.append(problem)
            problem = _bounds(member, _length(value), "length")
            if problem:
                problems.append(f"Value {_render(value)} at '{where}' failed to satisfy constraint: {problem}")
            params[top] = value
    for top, items in lists.items():
        values = [items[i] for i in sorted(items)]
        element, where = members[top].member, _wire_name(top)
        for value in values:
            problem = _bounds(element, _length(value), "length")
            if problem:
                problems.append(f"Value {_render(value)} at '{where}' failed to satisfy constraint: {problem}")
            problem = _pattern_problem(element, value, where)
            if problem:
                problems.append(problem)
        problem = _bounds(members[top], len(values), "length")
        if problem:
            problems.append(f"Value '{values}' at '{where}' failed to satisfy constraint: {problem}")
        params[top] = values
    for top, entries in structs.items():
        where = _wire_name(top)
        records = [entries[i] for i in sorted(entries)]
        element = members[top].member
        for item in records:
            for field_name in element.required_members:
                if field_name not in item:
                    problems.append(f"Value null at '{where}.member.{_wire_name(field_name)}' failed to satisfy "
                                    "constraint: Member must not be null")
            for field_name, value in item.items():
                field_where = f"{where}.member.{_wire_name(field_name)}"
                problem = _bounds(element.members[field_name], _length(value), "length")
                if problem:
                    problems.append(f"Value {_render(value)} at '{field_where}' failed to satisfy constraint: "
                                    f"{problem}")
                problem = _pattern_problem(element.members[field_name], value, field_where)
                if problem:
                    problems.append(problem)
        problem = _bounds(members[top], len(records), "length")
        if problem:
            problems.append(f"Value at '{where}' failed to satisfy constraint: {problem}")
        params[top] = records
    for name in members:
        if name in required and name not in raw and name not in lists and name not in structs:
            problems.append(f"Value null at '{_wire_name(name)}' failed to satisfy constraint: "
                            "Member must not be null")
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) != 1 else ''} detected: "
        raise QueryError("ValidationError", count + "; ".join(problems))
    return params
