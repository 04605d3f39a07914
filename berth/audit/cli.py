"""`berth audit`: the trail as a table or JSON lines."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from berth.audit import AuditTrail
from berth.db.store import Backend

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """An instant: ISO 8601 (`2026-12-01T10:00:00Z`, a date) or an age (`15m`, `2h`, `7d` ago)."""
    now = time.time() if now is None else now
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601, or an age such as 15m, 2h, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _row(rec: dict[str, Any]) -> list[str]:
    who = (rec.get("userIdentity") or {}).get("arn") or "-"
    params = rec.get("requestParameters") or {}
    target = params.get("repositoryName") or params.get("UserName") or params.get("RoleArn") or ""
    return [rec["eventTime"], rec["eventSource"].split(".")[0], rec["eventName"], who, target,
            rec.get("sourceIPAddress") or "-", rec.get("errorCode") or "ok"]


async def show(db: Backend, since: float | None, until: float | None, principal: str | None, event: str | None,
               account: str | None, limit: int, as_json: bool) -> int:
    records = await AuditTrail(db, "").search(since, until, principal, event, account, limit)
    if as_json:
        for rec in records:
            sys.stdout.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("time", "source", "event", "principal", "target", "source IP", "result")
    for rec in records:
        table.add_row(*_row(rec))
    Console(width=200).print(table)
    return 0
