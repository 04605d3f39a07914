"""The audit trail: one CloudTrail-shaped record per control-plane call and per registry write.

The edges fill an `AuditNote` as they learn who called what (the ECR face, the IAM/STS face, and the
/v2 writes in app.py) and hand it to `AuditTrail.record` when they answer. Records are written beside
the metadata (berth/db/audit.py), kept `retention_days`, pruned by a periodic job, read by `berth audit`.
Secrets never reach a record: `mask` replaces every value whose key names a secret, and large
values (layer parts) by their size.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from berth.db import audit as q
from berth.db.store import Backend

log = logging.getLogger("berth.audit")

RECORD_VERSION = "1.08"  # CloudTrail's eventVersion of the shape followed
PRUNE_JOB = "audit.prune"
PRUNE_EVERY = 3600.0
MASKED = "HIDDEN_DUE_TO_SECURITY_REASONS"  # CloudTrail's own words for a value it leaves out
_SECRET_KEYS = re.compile(r"secret|password|passphrase|token|credential|privatekey|layerpartblob", re.I)
_SAFE_KEYS = frozenset({"accesskeyid", "tokencode", "durationseconds", "maxresults", "nexttoken", "marker",
                        "expiration", "expiresat"})
MAX_VALUE_CHARS = 4096  # a longer string (a policy text, a manifest) is kept by its length and its start
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck")
SOURCES = {"ecr": "ecr.amazonaws.com", "iam": "iam.amazonaws.com", "sts": "sts.amazonaws.com"}


def mask(value: Any, key: str = "") -> Any:
    """`value` with every secret replaced (keys like SecretAccessKey, SessionToken, Password, layerPartBlob)."""
    k = key.replace("_", "").replace("-", "").lower()
    if key and k not in _SAFE_KEYS and _SECRET_KEYS.search(k):
        return MASKED if not isinstance(value, (bytes, str)) or k != "layerpartblob" else f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(kk): mask(v, str(kk)) for kk, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v, key) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:256] + f"…<{len(value)} characters>"
    if isinstance(value, (datetime,)):
        return value.isoformat()
    return value


def read_only(event_name: str) -> bool:
    return event_name.startswith(READ_PREFIXES)


@dataclass
class AuditNote:
    """What an edge learns about one call, as it learns it."""

    source: str  # ecr.amazonaws.com | iam.amazonaws.com | sts.amazonaws.com
    source_ip: str
    user_agent: str = ""
    event_name: str = ""
    principal_arn: str = ""
    principal_type: str = ""
    account: str = ""
    access_key_id: str = ""
    region: str = ""
    request_parameters: Any = None
    response_elements: Any = None
    error_code: str | None = None
    error_message: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event_type: str = "AwsApiCall"
    retry_after: float = 0.0  # a throttled call: the seconds its Retry-After header says

    def caller(self, principal: Any) -> None:
        """Fill the identity from a berth.iam.authz.Principal."""
        self.principal_arn = principal.arn or ""
        self.account = principal.account or self.account
        self.access_key_id = getattr(principal, "access_key_id", "") or ""
        arn = self.principal_arn
        self.principal_type = ("AssumedRole" if ":assumed-role/" in arn else "IAMUser" if ":user/" in arn
                               else "Root" if arn.endswith(":root") else "Unknown" if arn else "")


def user_agent(headers: Any) -> str:
    for k, v in headers or ():
        if (k.lower() if isinstance(k, bytes) else k.lower().encode()) == b"user-agent":
            return (v.decode("latin-1") if isinstance(v, bytes) else str(v))[:512]
    return ""


def json_error(body: bytes) -> tuple[str | None, str | None]:
    """(errorCode, errorMessage) of an AWS JSON error body (ECR)."""
    try:
        doc = json.loads(body)
        return str(doc.get("__type") or "Unknown"), str(doc.get("message") or "")[:1024]
    except (ValueError, AttributeError):
        return "Unknown", None


_XML_CODE = re.compile(rb"<Code>(.*?)</Code>")
_XML_MESSAGE = re.compile(rb"<Message>(.*?)</Message>", re.S)


def xml_error(body: bytes) -> tuple[str | None, str | None]:
    """(errorCode, errorMessage) of an AWS query-protocol error document (IAM, STS)."""
    import html

    code, msg = _XML_CODE.search(body), _XML_MESSAGE.search(body)
    return (html.unescape(code.group(1).decode()) if code else "Unknown",
            html.unescape(msg.group(1).decode())[:1024] if msg else None)


def to_record(note: AuditNote, now: float) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": note.principal_type or "Unknown", "arn": note.principal_arn or None,
                                "accountId": note.account or None}
    if note.access_key_id:
        identity["accessKeyId"] = note.access_key_id
    ro = read_only(note.event_name)
    rec: dict[str, Any] = {
        "eventVersion": RECORD_VERSION,
        "userIdentity": identity,
        "eventTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": note.source,
        "eventName": note.event_name or "Unknown",
        "awsRegion": note.region or None,
        "sourceIPAddress": note.source_ip or None,
        "userAgent": note.user_agent or None,
        "requestParameters": mask(note.request_parameters) if note.request_parameters else None,
        "responseElements": None if ro or note.error_code else mask(note.response_elements),
        "requestID": note.request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": ro,
        "eventType": note.event_type,
        "managementEvent": True,
        "recipientAccountId": note.account or None,
    }
    if note.error_code:
        rec["errorCode"] = note.error_code
        rec["errorMessage"] = note.error_message
    return rec


class AuditTrail:
    def __init__(self, db: Backend, default_account: str, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.default_account = default_account
        self.clock = clock

    async def record(self, note: AuditNote) -> None:
        """Write one record; never fails the call it records (a failure is logged, without the record)."""
        now = self.clock()
        try:
            rec = to_record(note, now)
            row = q.AuditRow(now, note.account or self.default_account, note.source, rec["eventName"],
                             note.principal_arn, note.error_code,
                             json.dumps(rec, separators=(",", ":"), default=str))
            await self.db.write(q.append, [row])
        except Exception as e:  # noqa: BLE001 - the audit never breaks the request it records
            log.error("audit record of %s %s not written: %s", note.source, note.event_name, type(e).__name__)

    async def search(self, since: float | None = None, until: float | None = None, principal: str | None = None,
                     event: str | None = None, account: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.db.read(q.search, since, until, principal, event, account, limit)
        return [json.loads(r) for _, r in rows]

    async def prune(self, retention_days: float) -> int:
        before = self.clock() - retention_days * 86400
        total = 0
        while n := await self.db.write(q.prune, before):
            total += n
        return total


def prune_job(trail: AuditTrail, retention_days: float) -> Callable[[Any], Any]:
    """The periodic job that drops records older than the retention."""
    async def run(job: Any) -> None:
        if n := await trail.prune(retention_days):
            log.info("audit: pruned %d records older than %s days", n, retention_days)
    return run
