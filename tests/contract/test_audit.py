"""The audit trail's store (berth/db/audit.py through berth.audit.AuditTrail), SQLite and PostgreSQL:
records come back in order and filtered, secrets are masked before they are stored, retention prunes."""

from __future__ import annotations

from typing import Any

from berth.audit import MASKED, AuditNote, AuditTrail, mask
from berth.db import audit as qa
from berth.db.store import Backend
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_metadata import Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template

ARN = "arn:aws:iam::123456789012:user/alice"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _note(name: str, arn: str = ARN, **kw: Any) -> AuditNote:
    n = AuditNote("iam.amazonaws.com", "10.1.2.3", "aws-cli/1", event_name=name, principal_arn=arn,
                  principal_type="IAMUser", account="123456789012", region="us-east-1", **kw)
    return n


def test_record_search_prune(db: Harness) -> None:
    async def body(backend: Backend) -> None:
        clock = Clock(1_000_000.0)
        trail = AuditTrail(backend, "123456789012", clock)
        await trail.record(_note("CreateAccessKey", request_parameters={"UserName": "bob"},
                                 response_elements={"AccessKey": {"AccessKeyId": "AKIAX",
                                                                  "SecretAccessKey": "very-secret"}}))
        clock.t += 10
        await trail.record(_note("DeleteUser", arn="arn:aws:iam::123456789012:user/eve",
                                 request_parameters={"UserName": "bob"}, error_code="DeleteConflict",
                                 error_message="must delete access keys first"))
        clock.t += 10
        await trail.record(_note("ListUsers"))
        every = await trail.search()
        assert [r["eventName"] for r in every] == ["CreateAccessKey", "DeleteUser", "ListUsers"]
        first = every[0]
        assert first["eventSource"] == "iam.amazonaws.com" and first["sourceIPAddress"] == "10.1.2.3"
        assert first["userIdentity"] == {"type": "IAMUser", "arn": ARN, "accountId": "123456789012"}
        assert first["responseElements"]["AccessKey"] == {"AccessKeyId": "AKIAX", "SecretAccessKey": MASKED}
        assert first["eventTime"] == "1970-01-12T13:46:40Z"
        assert every[1]["errorCode"] == "DeleteConflict" and every[1]["responseElements"] is None
        assert every[2]["readOnly"] is True and every[2]["responseElements"] is None
        assert [r["eventName"] for r in await trail.search(principal=ARN)] == ["CreateAccessKey", "ListUsers"]
        assert [r["eventName"] for r in await trail.search(event="DeleteUser")] == ["DeleteUser"]
        assert [r["eventName"] for r in await trail.search(since=1_000_005.0)] == ["DeleteUser", "ListUsers"]
        assert [r["eventName"] for r in await trail.search(limit=1)] == ["ListUsers"]  # the newest
        clock.t = 1_000_000.0 + 86400 + 15  # one day later: a one-day retention drops the first two
        assert await trail.prune(1) == 2
        assert await backend.read(qa.count) == 1

    db.run(body)


def test_mask() -> None:
    out = mask({"SecretAccessKey": "s", "Credentials": {"SessionToken": "t", "AccessKeyId": "ASIA"},
                "password": "p", "nextToken": "n", "AccessKeyId": "AKIA", "layerPartBlob": b"x" * 10,
                "WebIdentityToken": "jwt", "authorizationData": [{"authorizationToken": "tok"}],
                "policyText": "p" * 10_000})
    assert out["SecretAccessKey"] == out["Credentials"] == out["password"] == out["WebIdentityToken"] == MASKED
    assert out["authorizationData"] == [{"authorizationToken": MASKED}]
    assert out["nextToken"] == "n" and out["AccessKeyId"] == "AKIA"
    assert out["layerPartBlob"] == "<10 bytes>"
    assert len(out["policyText"]) < 400 and out["policyText"].endswith("<10000 characters>")


def test_concurrent_records_are_group_committed(db: Harness) -> None:
    """60 calls at once (no journal, as on PostgreSQL): each returns only once its own record is stored,
    and they share transactions."""
    async def body(backend: Backend) -> None:
        import asyncio

        trail = AuditTrail(backend, "123456789012", Clock(2_000_000.0))
        before = await backend.read(qa.count)
        writes = 0
        real_write = backend.write

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal writes
            writes += fn is qa.append
            return await real_write(fn, *args, **kwargs)

        backend.write = counted  # type: ignore[method-assign]

        async def call(i: int) -> None:
            note = _note("TagResource", request_parameters={"i": i})
            await trail.record(note)
            found = await trail.search(event="TagResource", limit=100)
            assert note.request_id in {r["requestID"] for r in found}  # committed before record() returned

        try:
            await asyncio.gather(*(call(i) for i in range(60)))
        finally:
            backend.write = real_write  # type: ignore[method-assign]
        assert await backend.read(qa.count) == before + 60
        assert writes < 20, writes  # one transaction per batch, not one per record
    db.run(body)


def test_journalled_records_survive_a_crash(db: Harness, tmp_path: Any) -> None:
    """With a journal (the embedded default) record() returns at once; the rows reach the database in
    batches, and the rows of a process that died before its batch committed are put in at the next start."""
    from berth.audit.journal import Journal

    async def body(backend: Backend) -> None:
        import asyncio

        root = tmp_path / f"journal-{id(backend)}"
        trail = AuditTrail(backend, "123456789012", Clock(3_000_000.0), journal=Journal(root))
        before = await backend.read(qa.count)
        await asyncio.gather(*(trail.record(_note("PutImage", request_parameters={"i": i})) for i in range(30)))
        await trail.flush()
        assert await backend.read(qa.count) == before + 30
        # a process that journalled 5 rows and died: its lock is gone, its rows are not in the database
        dead = root / "99999-deadbeef"
        dead.mkdir()
        (dead / "lock").touch()
        from berth.audit.journal import _line
        from berth.db.audit import AuditRow

        rows = [AuditRow(3_000_000.0, "123456789012", "ecr.amazonaws.com", "PutImage", ARN, None,
                         f'{{"eventName":"PutImage","requestID":"lost-{i}"}}') for i in range(5)]
        (dead / "000000000001").write_bytes(b"".join(_line(r) for r in rows) + b'[3000000.0, "cut sho')
        assert await trail.recover() == 5
        assert not dead.exists()
        assert await backend.read(qa.count) == before + 35
        # a live process's journal is never taken: this trail's own (its directory is locked)
        other = AuditTrail(backend, "123456789012", Clock(3_000_000.0), journal=Journal(root))
        await trail.record(_note("PutImage"))
        assert await other.recover() == 0
        await trail.close()
        await other.close()
        assert [p.name for p in root.iterdir()] == []
    db.run(body)
