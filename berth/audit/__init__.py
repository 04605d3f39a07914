"""The audit trail: one CloudTrail-shaped record per control-plane call and per registry write.

The edges fill an `AuditNote` as they learn who called what (the ECR face, the IAM/STS face, and the
/v2 writes in app.py) and hand it to `AuditTrail.record` when they answer. Records are written beside
the metadata (berth/db/audit.py), kept `retention_days`, pruned by a periodic job, read by `berth audit`.
Secrets never reach a record: `mask` replaces every value whose key names a secret, and large
values (layer parts) by their size.

Records are written in batches, one transaction each: while one batch is being written the next
gathers, so N concurrent calls cost one transaction, not N (on SQLite's single writer the trail was
~4 transactions a push). A call's record is kept before the call is answered (the /v2 writes: before
the response starts, see berth/api/registry_audit.py), so an acknowledged write always has its
record: on the embedded default it is appended to a local journal (berth/audit/journal.py) and
reaches the database in the next batch, or at the next start after a crash; on PostgreSQL the call
waits for its batch's commit. Neither fsyncs (a process crash loses none, a power loss may lose the
last few, as the README says).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from berth.audit.journal import Journal, read_rows
from berth.db import audit as q
from berth.db.store import Backend

log = logging.getLogger("berth.audit")

RECORD_VERSION = "1.08"  # CloudTrail's eventVersion of the shape followed
PRUNE_JOB = "audit.prune"
PRUNE_EVERY = 3600.0
GATHER = 0.01  # seconds a journalled batch gathers records before its transaction
MASKED = "HIDDEN_DUE_TO_SECURITY_REASONS"  # CloudTrail's own words for a value it leaves out
_SECRET_KEYS = re.compile(r"secret|password|passphrase|token|credential|privatekey|layerpartblob", re.I)
_SAFE_KEYS = frozenset({"accesskeyid", "tokencode", "durationseconds", "maxresults", "nexttoken", "marker",
                        "expiration", "expiresat"})
MAX_VALUE_CHARS = 4096  # a longer string (a policy text, a manifest) is kept by its length and its start
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck")
SOURCES = {"ecr": "ecr.amazonaws.com", "iam": "iam.amazonaws.com", "sts": "sts.amazonaws.com"}


class _Ids:
    """UUID-shaped ids, a random prefix per process and a counter: uuid4() is a getrandom() call, twice
    a record. A new prefix in a forked process, so workers never share one."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count(1)

    def __call__(self) -> str:
        if os.getpid() != self._pid:
            self._pid, self._prefix, self._count = os.getpid(), str(uuid.uuid4())[:24], itertools.count(1)
        return f"{self._prefix}{next(self._count):012x}"


new_id = _Ids()
_stamp: list[Any] = [None, ""]  # the last second formatted, and its text


def _event_time(now: float) -> str:
    second = int(now)
    if _stamp[0] != second:
        _stamp[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    return str(_stamp[1])


@lru_cache(maxsize=4096)
def _kind_of_key(key: str) -> int:
    """0: an ordinary key; 1: a secret's; 2: a layer part's (kept by its size)."""
    k = key.replace("_", "").replace("-", "").lower()
    if not key or k in _SAFE_KEYS or not _SECRET_KEYS.search(k):
        return 0
    return 2 if k == "layerpartblob" else 1


def mask(value: Any, key: str = "") -> Any:
    """`value` with every secret replaced (keys like SecretAccessKey, SessionToken, Password, layerPartBlob)."""
    kind = _kind_of_key(key)
    if kind:
        return f"<{len(value)} bytes>" if kind == 2 and isinstance(value, (bytes, str)) else MASKED
    t = type(value)
    if t is str:  # the common cases first: isinstance against Mapping is an ABC check
        return value if len(value) <= MAX_VALUE_CHARS else value[:256] + f"…<{len(value)} characters>"
    if t is int or t is bool or t is float or value is None:
        return value
    if t is dict or isinstance(value, Mapping):
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
    request_id: str = field(default_factory=new_id)
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
        "eventTime": _event_time(now),
        "eventSource": note.source,
        "eventName": note.event_name or "Unknown",
        "awsRegion": note.region or None,
        "sourceIPAddress": note.source_ip or None,
        "userAgent": note.user_agent or None,
        "requestParameters": mask(note.request_parameters) if note.request_parameters else None,
        "responseElements": None if ro or note.error_code else mask(note.response_elements),
        "requestID": note.request_id,
        "eventID": new_id(),
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
    def __init__(self, db: Backend, default_account: str, clock: Callable[[], float] = time.time,
                 journal: Journal | None = None) -> None:
        """`journal`: rows are journalled locally and `record` returns at once (the embedded default);
        without one, `record` waits for the commit of a batch holding its row (PostgreSQL: a node's disk
        may not outlive the node)."""
        self.db = db
        self.default_account = default_account
        self.clock = clock
        self.journal = journal
        self._queue: list[tuple[q.AuditRow, asyncio.Future[None] | None]] = []
        self._batch_file: Path | None = None
        self._writer: asyncio.Task[None] | None = None

    async def record(self, note: AuditNote) -> None:
        """Write one record: returns once it is committed, or journalled; never fails the call it records
        (a failure is logged, without the record)."""
        now = self.clock()
        try:
            rec = to_record(note, now)
            row = q.AuditRow(now, note.account or self.default_account, note.source, rec["eventName"],
                             note.principal_arn, note.error_code,
                             json.dumps(rec, separators=(",", ":"), default=str))
            if self.journal is not None:
                self.journal.append(row)
        except Exception as e:  # noqa: BLE001 - the audit never breaks the request it records
            log.error("audit record of %s %s not written: %s", note.source, note.event_name, type(e).__name__)
            return
        done = None if self.journal is not None else asyncio.get_running_loop().create_future()
        self._queue.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())
        if done is not None:
            await asyncio.shield(done)  # a client gone mid-call does not take its record out of the batch

    async def _write_batches(self) -> None:
        while self._queue:
            if self.journal is not None:  # nobody waits: gather a few milliseconds' records per transaction
                await asyncio.sleep(GATHER)
            batch, self._queue = self._queue, []
            path = self.journal.cut() if self.journal is not None else None
            try:
                await self.db.write(q.append, [row for row, _ in batch])
                if path is not None:
                    Journal.done(path)
            except Exception as e:  # noqa: BLE001 - the audit never breaks the requests it records
                names = sorted({row.event_name for row, _ in batch})
                log.error("audit: %d records (%s) not written%s: %s", len(batch), ", ".join(names[:5]),
                          "; kept in the journal for the next start" if path is not None else "",
                          type(e).__name__)
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_result(None)

    async def flush(self) -> None:
        """Every record so far in the database (or failed, logged)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def recover(self) -> int:
        """Put the journalled rows of processes that died into the database; how many."""
        if self.journal is None:
            return 0
        total = 0
        for d, files in self.journal.orphans():
            rows = [row for f in files for row in read_rows(f)]
            if rows:
                await self.db.write(q.append, rows)
                total += len(rows)
            Journal.release(d)
        if total:
            log.warning("audit: %d records of a process that stopped uncleanly recovered from the journal", total)
        return total

    async def close(self) -> None:
        await self.flush()
        if self.journal is not None and not self._queue:
            self.journal.close()
            self.journal = None

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
