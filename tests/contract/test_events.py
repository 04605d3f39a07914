"""Events contract: every change to the registry's content appends its event in the change's own
transaction, through the services both faces share, on SQLite and on PostgreSQL.

A refused change (an immutable tag, a referenced image, a repository that is not empty) records
nothing; a push that changes nothing records nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from berth.db.events import Event, EventRow, read_events
from berth.registry.errors import ManifestReferenced, RepositoryNotEmpty, TagImmutable
from berth.registry.images import ImageId
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_concurrency import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    World,
    digest_of,
    image_manifest,
    index_manifest,
    link,
    run_many,
)
from tests.contract.test_metadata import ACCOUNT, REGION, Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template


async def events(w: World, after: int = 0) -> list[EventRow]:
    return await w.db.read(read_events, after, 1000)


def kinds(rows: list[EventRow]) -> list[tuple[Event, str | None, str | None]]:
    return [(e.kind, e.digest, e.tag) for e in rows]


def one(h: Harness, tmp_path: Path, body: Any) -> Any:
    async def single(ws: list[World]) -> Any:
        return await body(ws[0])

    return run_many(h, tmp_path, single, n=1)


def test_push_tag_move_and_deletes_record_one_event_each(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repos.create(ACCOUNT, REGION, "team/app")
        created = await events(w)
        assert kinds(created) == [(Event.REPOSITORY_CREATED, None, None)]
        assert (created[0].account_id, created[0].region, created[0].repository) == (ACCOUNT, REGION, "team/app")
        mark = created[-1].id
        config = digest_of(b"config")
        await link(w, repo.id, config)

        one_body, two_body = image_manifest("one", config), image_manifest("two", config)
        first = await w.registry.put_manifest(repo, "v1", one_body, OCI_MANIFEST)
        again = await w.registry.put_manifest(repo, "v1", one_body, OCI_MANIFEST)  # nothing new: no event
        assert again.digest == first.digest
        second = await w.registry.put_manifest(repo, "v1", two_body, OCI_MANIFEST)  # moves v1
        pushed = await events(w, mark)
        assert kinds(pushed) == [(Event.IMAGE_PUSHED, first.digest, "v1"), (Event.IMAGE_PUSHED, second.digest, "v1"),
                                 (Event.TAG_MOVED, second.digest, "v1")]
        assert pushed[0].payload == {"mediaType": OCI_MANIFEST, "artifactType": OCI_CONFIG}  # as the parser reads it
        assert pushed[2].payload == {"previousDigest": first.digest}
        mark = pushed[-1].id

        await w.registry.put_manifest(repo, "keep", two_body, OCI_MANIFEST)  # a second tag on the same image
        await w.registry.delete_manifest(repo, "keep")  # OCI DELETE by tag: the tag only
        deleted, failures = await w.images.delete(repo, [ImageId(tag="v1")])  # ECR: the last tag takes the image
        assert not failures and deleted == [ImageId(second.digest, "v1")]
        await w.registry.delete_manifest(repo, first.digest)  # by digest: the untagged first image
        rows = await events(w, mark)
        assert kinds(rows) == [(Event.IMAGE_PUSHED, second.digest, "keep"), (Event.TAG_DELETED, second.digest, "keep"),
                               (Event.IMAGE_DELETED, second.digest, None), (Event.IMAGE_DELETED, first.digest, None)]
        assert rows[2].payload == {"tags": ["v1"]} and rows[3].payload == {"tags": []}
        mark = rows[-1].id

        await w.repos.delete(ACCOUNT, REGION, "team/app")
        assert kinds(await events(w, mark)) == [(Event.REPOSITORY_DELETED, None, None)]

    one(db, tmp_path, body)


def test_refused_changes_record_nothing(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repos.create(ACCOUNT, REGION, "locked", mutability="IMMUTABLE")
        config = digest_of(b"config")
        await link(w, repo.id, config)
        child_body = image_manifest("child", config)
        child = await w.registry.put_manifest(repo, "v1", child_body, OCI_MANIFEST)
        await w.registry.put_manifest(repo, "index", index_manifest("i", [(child.digest, len(child_body))]), OCI_INDEX)
        mark = (await events(w))[-1].id

        with pytest.raises(TagImmutable):
            await w.registry.put_manifest(repo, "v1", image_manifest("other", config), OCI_MANIFEST)
        with pytest.raises(ManifestReferenced):
            await w.registry.delete_manifest(repo, child.digest)
        with pytest.raises(RepositoryNotEmpty):
            await w.repos.delete(ACCOUNT, REGION, "locked")
        assert await events(w, mark) == []

    one(db, tmp_path, body)


def test_create_on_push_records_the_repository(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.registry.create_on_push = True
        repo = await w.registry.repository(ACCOUNT, REGION, "made/by-push", for_push=True)
        _, created = await w.registry.create_repository(ACCOUNT, REGION, "made/by-push")  # exists: no event
        assert not created
        assert kinds(await events(w)) == [(Event.REPOSITORY_CREATED, None, None)]
        assert repo.name == "made/by-push"

    one(db, tmp_path, body)
