"""IAM's and STS's XML responses, written from the operation's output shape in botocore's model.

A result is a dict keyed by the shape's member names; a key the shape does not have is a bug
here, not something to drop, so it raises. Lists are wrapped (``<Users><member>…</member></Users>``),
timestamps ISO 8601 in UTC, booleans ``true``/``false``, as the query protocol's parser expects.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.model import OperationModel, Shape

from berth.api.iam import model

# Characters XML 1.0 cannot carry at all, even escaped (they can arrive in an echoed parameter).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _timestamp(value: float | datetime) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise TypeError(f"{shape.name} expects a dict, got {type(value).__name__}")
        unknown = set(value) - set(shape.members)
        if unknown:
            raise KeyError(f"{shape.name} has no members {sorted(unknown)}")
        return "".join(
            f"<{name}>{_value(member, value[name])}</{name}>"
            for name, member in shape.members.items()
            if value.get(name) is not None
        )
    if kind == "list":
        tag = shape.member.serialization.get("name", "member")
        return "".join(f"<{tag}>{_value(shape.member, item)}</{tag}>" for item in value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        return _timestamp(value)
    if kind in ("integer", "long"):
        return str(int(value))
    if kind == "string":
        return text(str(value))
    raise TypeError(f"no XML rendering for shape type {kind!r}")


def result_document(service: str, op: OperationModel, result: dict[str, Any] | None, request_id: str) -> bytes:
    """``<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata>…</ResponseMetadata></OpResponse>``."""
    shape = op.output_shape
    body = ""
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{op.name}Result")
        body = f"<{wrapper}>{_value(shape, result or {})}</{wrapper}>"
    elif result:
        raise KeyError(f"{op.name} has no output, got {sorted(result)}")
    return (
        f'<{op.name}Response xmlns="{model.namespace(service)}">{body}'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op.name}Response>"
    ).encode()


def error_document(service: str, code: str, message: str, request_id: str, sender: bool = True) -> bytes:
    return (
        f'<ErrorResponse xmlns="{model.namespace(service)}"><Error><Type>{"Sender" if sender else "Receiver"}</Type>'
        f"<Code>{text(code)}</Code><Message>{text(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
