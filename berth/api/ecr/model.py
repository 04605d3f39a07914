"""The ECR wire contract, read from botocore's own service model: operations, targets, input validation.

Validation works on the decoded JSON 1.1 body, in two stages as AWS's JSON services do:
- shape problems (a member that is not in the model, a JSON type that does not fit: a string where a
  list is expected, an integer out of 32/64-bit range, a blob that is not base64) stop at the first
  one and raise SerializationError ("SerializationException"). Unknown members are refused rather
  than ignored: the real clients never send them, and a member we do not know is a feature we would
  silently skip.
- constraint problems (required, enum, pattern, length, range) are all collected and raised as one
  ValidationError. ECR answers these with InvalidParameterException and the message
  "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length less than
  or equal to 100'" (seen from the real service); an operation that does not declare
  InvalidParameterException gets the generic ValidationException with AWS's usual
  "1 validation error detected: Value '...' at '...' failed to satisfy constraint: ..." text.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel, Shape

from berth import jsonguard

_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Berth's opt-in extension members, accepted beside a shape's own (a standard document never needs them);
# the capability that owns each validates its value: shape name -> member names.
EXTENSION_MEMBERS: dict[str, frozenset[str]] = {
    "ReplicationRule": frozenset({"tagFilters"}),  # berth/replication/rules.py
}
_MAX_RENDERED_VALUE = 1024  # a 4 MiB manifest does not belong in an error message


@functools.cache
def service_model() -> ServiceModel:
    """The ECR model bundled with botocore, loaded once."""
    loader = create_loader()
    return ServiceModel(loader.load_service_model("ecr", "service-2"), service_name="ecr")


def operation_names() -> list[str]:
    """Every ECR operation: the coverage oracle for the edge."""
    return sorted(_operation_set())


def operation_model(operation_name: str) -> OperationModel:
    if operation_name not in _operation_set():
        raise ValueError(f"unknown ECR operation {operation_name!r}")
    return service_model().operation_model(operation_name)


@functools.cache
def _operation_set() -> frozenset[str]:
    return frozenset(service_model().operation_names)


def target_prefix() -> str:
    return str(service_model().metadata["targetPrefix"])


def target_to_operation(x_amz_target: str | None) -> str | None:
    """``AmazonEC2ContainerRegistry_V20150921.CreateRepository`` -> ``CreateRepository``, else None."""
    if not x_amz_target:
        return None
    prefix, sep, name = x_amz_target.partition(".")
    if not sep or prefix != target_prefix() or name not in _operation_set():
        return None
    return name


def output_shape_members(operation_name: str) -> tuple[str, ...]:
    shape = operation_model(operation_name).output_shape
    return tuple(shape.members) if shape is not None else ()


class RequestError(Exception):
    code = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SerializationError(RequestError):
    code = "SerializationException"


class NestingError(RequestError):
    """A body nested too deep to parse: refused before parsing, as a bad parameter."""

    code = "InvalidParameterException"


@dataclass(frozen=True)
class Problem:
    path: str  # 'imageIds.1.member.imageTag', 1-based like AWS
    value: str  # rendered: null, or the value in single quotes
    constraint: str  # 'Member must ...'

    def validation_text(self) -> str:
        return f"Value {self.value} at '{self.path}' failed to satisfy constraint: {self.constraint}"

    def invalid_parameter_text(self) -> str:
        return f"Invalid parameter at '{self.path}' failed to satisfy constraint: '{self.constraint}'"


class ValidationError(RequestError):
    """Constraint violations; ``code`` and ``message`` are what the edge should send."""

    def __init__(self, problems: list[Problem], code: str = "InvalidParameterException") -> None:
        self.problems = tuple(problems)
        self.validation_message = (
            f"{len(problems)} validation error{'s' if len(problems) != 1 else ''} detected: "
            + "; ".join(p.validation_text() for p in problems)
        )
        self.invalid_parameter_message = "; ".join(p.invalid_parameter_text() for p in problems)
        self.code = code
        super().__init__(
            self.invalid_parameter_message if code == "InvalidParameterException" else self.validation_message
        )


def decode_body(body: bytes) -> dict[str, Any]:
    """A JSON 1.1 request body as a dict; an empty body is an empty request."""
    if not body.strip():
        return {}
    try:
        jsonguard.check_depth(body)
    except jsonguard.TooDeep as exc:
        raise NestingError(f"The request body is not valid: {exc}") from None
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also a number beyond int's digit limit
        raise SerializationError(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise SerializationError("Start of structure or map expected at the top of the request body.")
    if jsonguard.has_lone_surrogate(body, params):
        raise SerializationError("The request body holds a lone UTF-16 surrogate (\\uD800-\\uDFFF unpaired), "
                                 "which is not a character.")
    return params


def validate_input(operation_name: str, params: dict[str, Any]) -> None:
    """Check ``params`` (a decoded request body) against the operation's input shape."""
    op = operation_model(operation_name)
    if op.input_shape is None:
        if params:
            raise SerializationError(f"{operation_name} takes no parameters")
        return
    problems: list[Problem] = []
    _check(op.input_shape, params, "", problems)
    if problems:
        declared = {shape.name for shape in op.error_shapes}
        code = "InvalidParameterException" if "InvalidParameterException" in declared else "ValidationException"
        raise ValidationError(problems, code)


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    # The model's patterns are Java regexes, where \w, \d and \s are ASCII-only.
    return re.compile(pattern, re.ASCII)


def _render(value: Any) -> str:
    if value is None:
        return "null"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if len(text) > _MAX_RENDERED_VALUE:
        text = text[:_MAX_RENDERED_VALUE] + "..."
    return f"'{text}'"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "structure or map" if isinstance(value, dict) else type(value).__name__


def _mismatch(path: str, expected: str, value: Any) -> SerializationError:
    where = f" at '{path}'" if path else ""
    return SerializationError(f"Expected {expected}{where}, found {_json_type(value)}.")


def _length(value: str) -> int:
    # Java counts UTF-16 code units.
    return len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2


def _check_bounds(shape: Shape, size: float, what: str, value: Any, path: str, problems: list[Problem]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        problems.append(Problem(path, _render(value), f"Member must have {what} greater than or equal to {low}"))
    if high is not None and size > high:
        problems.append(Problem(path, _render(value), f"Member must have {what} less than or equal to {high}"))


def _check(shape: Shape, value: Any, path: str, problems: list[Problem]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise _mismatch(path, "a structure", value)
        members = shape.members
        for name in value:
            if name not in members and name not in EXTENSION_MEMBERS.get(shape.name, ()):
                where = path or "input"
                known = f"must be one of: {', '.join(members)}" if members else "none are accepted"
                raise SerializationError(f'Unknown parameter in {where}: "{name}", {known}')
        required = shape.required_members
        for name, member in members.items():
            child = f"{path}.{name}" if path else name
            if value.get(name) is None:
                if name in required:
                    problems.append(Problem(child, "null", "Member must not be null"))
            else:
                _check(member, value[name], child, problems)
    elif kind == "list":
        if not isinstance(value, list):
            raise _mismatch(path, "a list", value)
        _check_bounds(shape, len(value), "length", value, path, problems)
        for index, item in enumerate(value, start=1):
            child = f"{path}.{index}.member"
            if item is None:
                problems.append(Problem(child, "null", "Member must not be null"))
            else:
                _check(shape.member, item, child, problems)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _mismatch(path, "a map", value)
        _check_bounds(shape, len(value), "length", value, path, problems)
        for key, item in value.items():
            _check(shape.key, key, f"{path}.{key}.key", problems)
            if item is None:
                problems.append(Problem(f"{path}.{key}.value", "null", "Member must not be null"))
            else:
                _check(shape.value, item, f"{path}.{key}.value", problems)
    elif kind == "string":
        if not isinstance(value, str):
            raise _mismatch(path, "a string", value)
        if shape.enum and value not in shape.enum:
            problems.append(
                Problem(path, _render(value), f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
            )
        pattern = shape.metadata.get("pattern")
        if pattern is not None and not _pattern(pattern).fullmatch(value):
            problems.append(Problem(path, _render(value), f"Member must satisfy regular expression pattern: {pattern}"))
        _check_bounds(shape, _length(value), "length", value, path, problems)
    elif kind in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(path, f"an {kind}" if kind == "integer" else "a long", value)
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise SerializationError(f"Number {value} at '{path}' is out of range for a {kind}.")
        _check_bounds(shape, value, "value", value, path, problems)
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(path, "a number", value)
        _check_bounds(shape, value, "value", value, path, problems)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _mismatch(path, "a boolean", value)
    elif kind == "timestamp":
        # JSON 1.1 sends timestamps as epoch seconds.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(path, "a timestamp in epoch seconds", value)
    elif kind == "blob":
        if not isinstance(value, str):
            raise _mismatch(path, "a base64 string", value)
        try:
            size = len(binascii.a2b_base64(value, strict_mode=True))
        except (binascii.Error, ValueError) as exc:
            raise SerializationError(f"Value at '{path}' is not valid base64.") from exc
        _check_bounds(shape, size, "length", f"<{size} bytes>", path, problems)
    else:
        raise SerializationError(f"Unsupported shape type {kind!r} at '{path}'.")
