"""The audit trail's rows (table audit_events): one CloudTrail-shaped record each, JSON in `record`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.store import Q, Txn, lease


@dataclass(frozen=True, slots=True)
class AuditRow:
    event_time: float
    account_id: str
    event_source: str
    event_name: str
    principal: str
    error_code: str | None
    record: str


@lease  # committed without waiting for the disk: survives a process crash; the next durable write covers it
def append(rows: Sequence[AuditRow]) -> Txn[None]:
    for r in rows:
        yield Q("INSERT INTO audit_events (event_time, account_id, event_source, event_name, principal, error_code, "
                "record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.event_time, r.account_id, r.event_source, r.event_name, r.principal, r.error_code, r.record))


def search(since: float | None, until: float | None, principal: str | None, event: str | None,
           account: str | None, limit: int) -> Txn[list[tuple[int, str]]]:
    """(id, record) oldest first, of the newest `limit` records that match."""
    where, params = ["1 = 1"], []  # type: ignore[var-annotated]
    for clause, value in (("event_time >= ?", since), ("event_time < ?", until), ("principal = ?", principal),
                          ("event_name = ?", event), ("account_id = ?", account)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = yield Q(f"SELECT id, record FROM audit_events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                   (*params, limit), "all")
    return [(int(r[0]), str(r[1])) for r in reversed(rows)]


def prune(before: float, batch: int = 10_000) -> Txn[int]:
    """Delete up to `batch` records older than `before` (the retention); how many went."""
    n = yield Q("DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE event_time < ? "
                "ORDER BY id LIMIT ?)", (before, batch))
    return int(n)


def count() -> Txn[int]:
    row: Any = yield Q("SELECT COUNT(*) FROM audit_events", (), "one")
    return int(row[0])
