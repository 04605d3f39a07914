"""Concurrency contract: every read-decide-write operation keeps its invariant under concurrent writers.

Each test releases N >= 8 writers at once through a barrier, each on its own backend (its own
connection pool on PostgreSQL, its own connections and writer thread on SQLite: as separate processes
would), for many rounds, and checks the invariant after each round. They go through the services (the
code path both faces share), on the real backends of tests/contract/test_metadata.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from berth.db import iam as qiam
from berth.db import iam_entities as qent
from berth.db import images as qi
from berth.db import registry as q
from berth.db import replication as qrep
from berth.db.store import Backend
from berth.iam.entities import MAX_TAGS
from berth.iam.errors import DeleteConflict, LimitExceeded, NoSuchEntity
from berth.iam.service import MAX_KEYS_PER_USER, IdentityService
from berth.registry.errors import (
    ManifestBlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    NameUnknown,
    RepositoryNotEmpty,
    TagImmutable,
    TooManyTags,
)
from berth.registry.images import ImageId, Images
from berth.registry.repositories import MAX_RESOURCE_TAGS, RepositoryAdmin
from berth.registry.service import RegistryService
from berth.registry.uploads import Uploads
from berth.storage.filesystem import FilesystemBlobStore
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_metadata import ACCOUNT, REGION, Harness

# the backend fixtures of the metadata contract: every test here runs on SQLite and on PostgreSQL
db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template

N = 8  # writers per round
ROUNDS = 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(seed: str, config: str, layers: tuple[str, ...] = ()) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
           "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": 1} for d in layers],
           "annotations": {"seed": seed}}
    return json.dumps(doc).encode()


def index_manifest(seed: str, children: list[tuple[str, int]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": s} for d, s in children],
           "annotations": {"seed": seed}}
    return json.dumps(doc).encode()


class World:
    """The services of one process, over one backend."""

    def __init__(self, db: Backend, root: Path) -> None:
        blobs = FilesystemBlobStore(root)
        self.db = db
        self.registry = RegistryService(db, blobs, Uploads(db, blobs))
        self.images = Images(self.registry)
        self.repos = RepositoryAdmin(db)
        self.identity = IdentityService(db)


Many = Callable[[list[World]], Awaitable[Any]]


def run_many(h: Harness, tmp_path: Path, body: Many, n: int = N) -> Any:
    """Run `body` with `n` Worlds, each on its own backend over the same database."""

    async def main() -> Any:
        backends = [await h.open() for _ in range(n)]
        try:
            return await body([World(b, tmp_path / "blobs") for b in backends])
        finally:
            for b in backends:
                await b.close()

    return asyncio.run(main())


async def at_once(calls: list[Awaitable[Any]]) -> list[Any]:
    """Run every call (a coroutine, not yet started), released together through a barrier; each result or
    exception, in order."""
    barrier = asyncio.Barrier(len(calls))

    async def one(call: Awaitable[Any]) -> Any:
        await barrier.wait()
        return await call

    return await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)


async def every_round(one_round: Callable[[int], Awaitable[None]]) -> None:
    """Run ROUNDS rounds; fail at the end with how many rounds broke the invariant."""
    broken: list[str] = []
    for r in range(ROUNDS):
        try:
            await one_round(r)
        except AssertionError as e:
            broken.append(f"round {r}: {e}")
    assert not broken, f"{len(broken)} of {ROUNDS} rounds broke the invariant; the first: {broken[0]}"


def unexpected(results: list[Any], *allowed: type[BaseException]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]


async def link(w: World, repo_id: int, *digests: str) -> None:
    for d in digests:
        await w.db.write(q.link_blob, repo_id, d, 1, 0.0)


def test_exactly_one_manifest_wins_an_immutable_tag(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        repo = await ws[0].repos.create(ACCOUNT, REGION, "locked", mutability="IMMUTABLE")
        config = digest_of(b"config")
        await link(ws[0], repo.id, config)

        async def one_round(r: int) -> None:
            tag = f"v{r}"
            bodies = [image_manifest(f"{r}-{i}", config) for i in range(N)]
            results = await at_once([w.registry.put_manifest(repo, tag, b, OCI_MANIFEST)
                                     for w, b in zip(ws, bodies, strict=True)])
            assert not unexpected(results, TagImmutable), results
            winners = [x for x in results if not isinstance(x, BaseException)]
            assert len(winners) == 1, f"{len(winners)} of {N} pushes to one immutable tag accepted"
            assert await ws[0].db.read(q.tag_digest, repo.id, tag) == winners[0].digest
            losers = {digest_of(b) for b in bodies} - {winners[0].digest}
            assert await ws[0].db.read(q.present_manifests, repo.id, list(losers)) == set()  # nothing written

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_manifest_listed_by_a_concurrent_index_is_never_deleted(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        repo = await ws[0].repos.create(ACCOUNT, REGION, "multi")
        config = digest_of(b"config")
        await link(ws[0], repo.id, config)

        async def one_round(r: int) -> None:
            child_body = image_manifest(f"child-{r}", config)
            child = await ws[0].registry.put_manifest(repo, digest_of(child_body), child_body, OCI_MANIFEST)
            half = N // 2
            deleters = [w.registry.delete_manifest(repo, child.digest) for w in ws[:half]]
            indexes = [index_manifest(f"{r}-{i}", [(child.digest, len(child_body))]) for i in range(N - half)]
            pushers = [w.registry.put_manifest(repo, f"i{r}-{i}", b, OCI_INDEX)
                       for i, (w, b) in enumerate(zip(ws[half:], indexes, strict=True))]
            results = await at_once([*deleters, *pushers])
            assert not unexpected(results, ManifestReferenced, ManifestUnknown), results
            child_there = await ws[0].db.read(q.present_manifests, repo.id, [child.digest])
            stored = await ws[0].db.read(q.present_manifests, repo.id, [digest_of(b) for b in indexes])
            pushed = [x for x in results[half:] if not isinstance(x, BaseException)]
            assert len(stored) == len(pushed)
            if stored:
                assert child_there, f"{len(stored)} index(es) point at a deleted manifest"
            deleted = [x for x in results[:half] if not isinstance(x, BaseException)]
            assert len(deleted) <= 1
            assert bool(deleted) != bool(child_there)

        await every_round(one_round)

    run_many(db, tmp_path, body)


class RawWriter:
    """A transaction of the test's own, on its own connection, left open while the service runs."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self._pg: Any = None
        self._lite: sqlite3.Connection | None = None

    async def begin(self, sql: str, *params: Any) -> None:
        if self.h.kind == "postgres":
            self._pg = await asyncpg.connect(self.h.where)
            await self._pg.execute("BEGIN")
            await self._pg.execute(sql.replace("?", "$1", 1).replace("?", "$2", 1), *params)
        else:
            self._lite = sqlite3.connect(self.h.where, isolation_level=None)
            self._lite.execute("BEGIN IMMEDIATE")
            self._lite.execute(sql, params)

    async def commit(self) -> None:
        if self._pg is not None:
            await self._pg.execute("COMMIT")
            await self._pg.close()
        if self._lite is not None:
            self._lite.execute("COMMIT")
            self._lite.close()


def test_a_manifest_is_never_committed_over_a_reference_removed_meanwhile(db: Harness, tmp_path: Path) -> None:
    """A blob unlink (or a child manifest delete) is under way when a manifest using it is pushed: the push
    must not commit over it. The service's reference check must be inside its write (and wait for the
    unlink), not a read before it that still sees the link."""

    async def body(ws: list[World]) -> None:
        repo = await ws[0].repos.create(ACCOUNT, REGION, "refs")
        broken: list[str] = []
        for r in range(4):
            config = digest_of(f"config-{r}".encode())
            await link(ws[0], repo.id, config)
            child_body = image_manifest(f"child-{r}", config)
            child = await ws[0].registry.put_manifest(repo, digest_of(child_body), child_body, OCI_MANIFEST)
            if r % 2 == 0:  # a layer blob unlinked meanwhile
                layer = digest_of(f"layer-{r}".encode())
                await link(ws[0], repo.id, layer)
                sql, params = "DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo.id, layer)
                pushed, media_type = image_manifest(f"user-{r}", config, (layer,)), OCI_MANIFEST
                refused: type[Exception] = ManifestBlobUnknown
            else:  # an index's child deleted meanwhile
                sql, params = "DELETE FROM manifests WHERE repository_id = ? AND digest = ?", (repo.id, child.digest)
                pushed, media_type = index_manifest(f"index-{r}", [(child.digest, len(child_body))]), OCI_INDEX
                refused = ManifestUnknown
            raw = RawWriter(db)
            await raw.begin(sql, *params)
            push = asyncio.ensure_future(ws[1].registry.put_manifest(repo, f"t{r}", pushed, media_type))
            await asyncio.sleep(0.3)  # the push runs (or waits for the raw transaction's locks)
            await raw.commit()
            try:
                await push
            except refused:
                continue
            broken.append(f"round {r}: a manifest was committed over {'a blob' if r % 2 == 0 else 'an index child'} "
                          f"removed before its commit")
        assert not broken, f"{len(broken)} of 4 rounds broke the invariant; the first: {broken[0]}"

    run_many(db, tmp_path, body, n=2)


def test_a_last_tag_and_its_image_go_together(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        repo = await ws[0].repos.create(ACCOUNT, REGION, "tags")
        config = digest_of(b"config")
        await link(ws[0], repo.id, config)

        async def one_round(r: int) -> None:
            image = image_manifest(f"image-{r}", config)
            digest = digest_of(image)
            half = N // 2
            tags = [f"r{r}-t{i}" for i in range(half)]
            for t in tags:
                await ws[0].registry.put_manifest(repo, t, image, OCI_MANIFEST)
            # half delete one tag each (ECR's last-tag rule); in odd rounds the others tag the image anew
            calls: list[Awaitable[Any]] = [
                w.images.delete(repo, [ImageId(tag=t)]) for w, t in zip(ws, tags, strict=False)]
            if r % 2:
                calls += [w.registry.put_manifest(repo, f"r{r}-new{i}", image, OCI_MANIFEST)
                          for i, w in enumerate(ws[half:])]
            results = await at_once(calls)
            assert not unexpected(results), results
            for deleted, failures in results[:half]:
                assert not failures and len(deleted) == 1
            remaining = (await ws[0].db.read(qi.tags_of, repo.id, [digest])).get(digest, [])
            present = bool(await ws[0].db.read(q.present_manifests, repo.id, [digest]))
            assert present == bool(remaining), (f"image present={present} with tags {remaining}: the "
                                                "last tag and its image must go together")
            for t in remaining:
                assert await ws[0].db.read(q.manifest_by_tag, repo.id, t) is not None, f"tag {t} dangles"

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_never_more_resource_tags_than_the_limit(db: Harness, tmp_path: Path) -> None:
    per_call = 10
    assert N * per_call > MAX_RESOURCE_TAGS

    async def body(ws: list[World]) -> None:

        async def one_round(r: int) -> None:
            name = f"tagged-{r}"
            await ws[0].repos.create(ACCOUNT, REGION, name)
            results = await at_once([
                w.repos.tag(ACCOUNT, REGION, name,
                                             [{"Key": f"k{i}-{j}", "Value": "v"} for j in range(per_call)])
                for i, w in enumerate(ws)])
            assert not unexpected(results, TooManyTags), results
            accepted = [x for x in results if not isinstance(x, BaseException)]
            count = len(await ws[0].repos.tags(ACCOUNT, REGION, name))
            assert count <= MAX_RESOURCE_TAGS, f"{count} resource tags, limit {MAX_RESOURCE_TAGS}"
            assert count == per_call * len(accepted)

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_deleted_user_keeps_no_key_or_policy(db: Harness, tmp_path: Path) -> None:
    policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}'

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)

        async def one_round(r: int) -> None:
            user = f"user-{r}"
            await ws[0].identity.create_user(ACCOUNT, user)
            calls: list[Awaitable[Any]] = [ws[0].identity.delete_user(ACCOUNT, user)]
            calls.append(ws[1].identity.create_access_key(ACCOUNT, user))
            calls += [w.identity.put_user_policy(ACCOUNT, user, f"p{i}", policy)
                      for i, w in enumerate(ws[2:])]
            results = await at_once(calls)
            assert not unexpected(results, DeleteConflict, NoSuchEntity), results
            gone = await ws[0].db.read(qiam.get_user, ACCOUNT, user) is None
            assert gone == (results[0] is None)
            if gone:
                keys = await ws[0].db.read(qiam.list_access_keys, ACCOUNT, user)
                policies = await ws[0].db.read(qiam.user_policies, ACCOUNT, user)
                assert not keys and not policies, (f"deleted user {user} keeps {len(keys)} key(s) "
                                                   f"and {len(policies)} policy(ies)")

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_deleted_user_or_group_keeps_no_membership_or_attachment(db: Harness, tmp_path: Path) -> None:
    readonly = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)
        entities = [w.identity.entities for w in ws]

        async def one_round(r: int) -> None:
            user, group = f"member-{r}", f"team-{r}"
            await ws[0].identity.create_user(ACCOUNT, user)
            await entities[0].create_group(ACCOUNT, group)
            calls: list[Awaitable[Any]] = [ws[0].identity.delete_user(ACCOUNT, user),
                                           entities[1].delete_group(ACCOUNT, group)]
            calls += [e.add_user_to_group(ACCOUNT, group, user) for e in entities[2:5]]
            calls += [e.attach(ACCOUNT, "user", user, readonly) for e in entities[5:7]]
            calls.append(entities[7].attach(ACCOUNT, "group", group, readonly))
            results = await at_once(calls)
            assert not unexpected(results, DeleteConflict, NoSuchEntity), results
            user_gone = await ws[0].db.read(qiam.get_user, ACCOUNT, user) is None
            group_gone = await entities[0].find_group(ACCOUNT, group) is None
            assert user_gone == (results[0] is None) and group_gone == (results[1] is None)
            members = await ws[0].db.read(qent.members, ACCOUNT, group)
            if user_gone:
                assert user not in members, f"deleted user {user} is still a member of {group}"
                assert not await ws[0].db.read(qent.attached, ACCOUNT, "user", user), \
                    f"deleted user {user} keeps an attached policy"
            if group_gone:
                assert not members, f"deleted group {group} keeps {len(members)} member(s)"
                assert not await ws[0].db.read(qent.attached, ACCOUNT, "group", group), \
                    f"deleted group {group} keeps an attached policy"

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_managed_policy_versions_and_attachments_decide_on_the_policy_row(db: Harness, tmp_path: Path) -> None:
    doc = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:%s", "Resource": "*"}]}'

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)
        entities = [w.identity.entities for w in ws]
        await ws[0].identity.create_user(ACCOUNT, "attacher")

        async def one_round(r: int) -> None:
            policy = await entities[0].create_policy(ACCOUNT, f"p{r}", doc % "ListImages")
            results = await at_once([e.create_version(ACCOUNT, policy.arn, doc % f"Describe{i}", False)
                                     for i, e in enumerate(entities)])
            assert not unexpected(results, LimitExceeded), results
            versions = await ws[0].db.read(qent.list_versions, policy.arn)
            assert len(versions) <= qent.MAX_POLICY_VERSIONS, f"{len(versions)} versions of {policy.arn}"
            assert len(versions) == 1 + len([x for x in results if not isinstance(x, BaseException)])
            for v in versions[:-1]:  # only the first (default) is left: the policy can be deleted
                await entities[0].delete_version(ACCOUNT, policy.arn, v.version_id)
            calls: list[Awaitable[Any]] = [entities[0].delete_policy(ACCOUNT, policy.arn)]
            calls += [e.attach(ACCOUNT, "user", "attacher", policy.arn) for e in entities[1:]]
            results = await at_once(calls)
            assert not unexpected(results, DeleteConflict, NoSuchEntity), results
            deleted = results[0] is None
            attached = policy.arn in await ws[0].db.read(qent.attached, ACCOUNT, "user", "attacher")
            assert deleted != attached, "an attachment names a deleted policy" if deleted else "nothing happened"
            if attached:
                await entities[0].detach(ACCOUNT, "user", "attacher", policy.arn)

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_never_more_access_keys_than_the_limit(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)

        async def one_round(r: int) -> None:
            user = f"keyed-{r}"
            await ws[0].identity.create_user(ACCOUNT, user)
            results = await at_once([w.identity.create_access_key(ACCOUNT, user) for w in ws])
            assert not unexpected(results, LimitExceeded), results
            keys = await ws[0].db.read(qiam.list_access_keys, ACCOUNT, user)
            assert len(keys) <= MAX_KEYS_PER_USER, f"{len(keys)} keys, limit {MAX_KEYS_PER_USER}"
            assert len(keys) == len([x for x in results if not isinstance(x, BaseException)])

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_non_force_repository_delete_never_deletes_a_concurrent_push(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:

        async def one_round(r: int) -> None:
            name = f"doomed-{r}"
            repo = await ws[0].repos.create(ACCOUNT, REGION, name)
            config = digest_of(b"config")
            await link(ws[0], repo.id, config)
            bodies = [image_manifest(f"{r}-{i}", config) for i in range(N - 1)]
            results = await at_once([ws[0].repos.delete(ACCOUNT, REGION, name),
                                     *(w.registry.put_manifest(repo, f"t{i}", b, OCI_MANIFEST)
                                       for i, (w, b) in enumerate(zip(ws[1:], bodies, strict=True)))])
            assert not unexpected(results, RepositoryNotEmpty, NameUnknown), results
            pushed = [x for x in results[1:] if not isinstance(x, BaseException)]
            deleted = not isinstance(results[0], BaseException)
            now = await ws[0].db.read(q.get_repository, ACCOUNT, REGION, name)
            assert (now is None) == deleted
            if deleted:
                assert not pushed, f"{len(pushed)} accepted push(es) deleted with their repository"
            else:
                found = await ws[0].db.read(q.present_manifests, repo.id, [m.digest for m in pushed])
                assert found == {m.digest for m in pushed}

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_pushes_of_one_manifest_under_many_tags_all_land(db: Harness, tmp_path: Path) -> None:
    """The same manifest pushed at once under N tags of a mutable repository: every tag lands, no error."""

    async def body(ws: list[World]) -> None:
        repo = await ws[0].repos.create(ACCOUNT, REGION, "same")
        config = digest_of(b"config")
        await link(ws[0], repo.id, config)

        async def one_round(r: int) -> None:
            image = image_manifest(f"same-{r}", config)
            results = await at_once([w.registry.put_manifest(repo, f"s{r}-{i}", image, OCI_MANIFEST)
                                     for i, w in enumerate(ws)])
            assert not unexpected(results), results
            assert len((await ws[0].db.read(qi.tags_of, repo.id, [digest_of(image)]))[digest_of(image)]) == N

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_never_more_templates_or_pull_through_rules_than_the_quota(db: Harness, tmp_path: Path) -> None:
    """CreateRepositoryCreationTemplate and CreatePullThroughCacheRule count, then insert: the account's row
    lock makes the count see every create committed before it (a quota of 3 here, 8 creators at once)."""
    from berth.db import pullthrough as qpt
    from berth.db import templates as qt

    quota = 3

    def template(prefix: str) -> qt.TemplateRow:
        return qt.TemplateRow(prefix, "", '["REPLICATION"]', "MUTABLE", "[]", '{"encryptionType": "AES256"}',
                              "[]", None, None, None, 0.0, 0.0)

    def rule(prefix: str) -> qpt.RuleRow:
        return qpt.RuleRow(prefix, "127.0.0.1:9", None, "", None, None, 0.0, 0.0)

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)

        async def one_round(r: int) -> None:
            region = f"us-test-{r}"  # a registry of its own each round
            made = await at_once([w.db.write(qt.create_template, ACCOUNT, region, template(f"t{r}x{i}"), quota)
                                  for i, w in enumerate(ws)])
            stored = len(await ws[0].db.read(qt.list_templates, ACCOUNT, region))
            assert made.count("created") == stored <= quota, (made, stored)
            made = await at_once([w.db.write(qpt.create_rule, ACCOUNT, region, rule(f"p{r}x{i}"), quota)
                                  for i, w in enumerate(ws)])
            rules = await ws[0].db.read(qpt.list_rules, ACCOUNT, region)
            assert made.count("created") == len(rules) <= quota, (made, len(rules))

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_policy_always_keeps_a_stored_default_version(db: Harness, tmp_path: Path) -> None:
    doc = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:%s", "Resource": "*"}]}'

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)
        entities = [w.identity.entities for w in ws]

        async def one_round(r: int) -> None:
            policy = await entities[0].create_policy(ACCOUNT, f"d{r}", doc % "ListImages")
            for i in range(2, 6):
                await entities[0].create_version(ACCOUNT, policy.arn, doc % f"Describe{i}", False)
            # v2..v5: for each, one caller makes it the default while another deletes it
            calls: list[Awaitable[Any]] = []
            for i, e in enumerate(entities):
                version = f"v{2 + (i // 2) % 4}"
                calls.append(e.set_default_version(ACCOUNT, policy.arn, version) if i % 2 == 0
                             else e.delete_version(ACCOUNT, policy.arn, version))
            results = await at_once(calls)
            assert not unexpected(results, DeleteConflict, NoSuchEntity), results
            row = await ws[0].db.read(qent.get_policy, policy.arn)
            assert row is not None
            stored = {v.version_id for v in await ws[0].db.read(qent.list_versions, policy.arn)}
            assert row.default_version in stored, \
                f"default {row.default_version} of {policy.arn} is not stored (versions: {sorted(stored)})"

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_a_deleted_role_keeps_no_attachment_or_inline_policy(db: Harness, tmp_path: Path) -> None:
    readonly = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    doc = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}'
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})

    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)
        entities = [w.identity.entities for w in ws]

        async def one_round(r: int) -> None:
            role = f"deployer-{r}"
            await entities[0].create_role(ACCOUNT, role, trust)
            calls: list[Awaitable[Any]] = [entities[0].delete_role(ACCOUNT, role)]
            calls += [e.attach(ACCOUNT, "role", role, readonly) for e in entities[1:3]]
            calls += [e.put_inline(ACCOUNT, "role", role, f"p{i}", doc) for i, e in enumerate(entities[3:6])]
            calls += [e.update_trust(ACCOUNT, role, trust) for e in entities[6:]]
            results = await at_once(calls)
            assert not unexpected(results, DeleteConflict, NoSuchEntity), results
            gone = await entities[0].find_role(ACCOUNT, role) is None
            assert gone == (results[0] is None)
            if gone:
                attached = await ws[0].db.read(qent.attached, ACCOUNT, "role", role)
                inline = await ws[0].db.read(qent.inline_policies, ACCOUNT, "role", role)
                assert not attached and not inline, \
                    f"deleted role {role} keeps {len(attached)} attachment(s) and {len(inline)} inline policy(ies)"

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_never_more_user_or_role_tags_than_the_limit(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        await ws[0].identity.ensure_account(ACCOUNT)
        entities = [w.identity.entities for w in ws]

        async def one_round(r: int) -> None:
            user = f"tagged-{r}"
            await ws[0].identity.create_user(ACCOUNT, user)
            calls: list[Awaitable[Any]] = [e.tag(ACCOUNT, "user", user, tuple((f"k{i}-{j}", "v") for j in range(10)))
                                           for i, e in enumerate(entities[1:])]
            calls.append(ws[0].identity.delete_user(ACCOUNT, user))
            results = await at_once(calls)
            assert not unexpected(results, LimitExceeded, NoSuchEntity), results
            tags = await ws[0].db.read(qent.tags, ACCOUNT, "user", user)
            if results[-1] is None:  # deleted
                assert not tags, f"deleted user {user} keeps {len(tags)} tag(s)"
            else:
                assert len(tags) <= MAX_TAGS, f"{len(tags)} tags, limit {MAX_TAGS}"
                assert len(tags) == 10 * len([x for x in results[:-1] if not isinstance(x, BaseException)])

        await every_round(one_round)

    run_many(db, tmp_path, body)


def test_nodes_starting_at_once_sync_the_config_peers_as_one_of_them_alone(db: Harness, tmp_path: Path) -> None:
    """Nodes start together on one database, each with its config file's peers (overlapping sets): the peers
    stored are one node's whole set, as if the starts ran one after another; a CLI peer no file names stays."""

    def peers_of(node: int, r: int) -> list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]]:
        names = [f"p{(node + r + k) % (N + 2)}" for k in range(3)]  # overlaps its neighbours' sets
        return [(n, f"http://node{node}.example:5000", f"AKIA{node}", "sealed", ("us-west-2",), ()) for n in names]

    cli = ("cli", "http://cli.example:5000")

    async def body(ws: list[World]) -> None:
        await ws[0].db.write(qrep.add_peer, *cli, "AKIACLI", "s", ["eu-west-1"], [], 0.0)

        async def one_round(r: int) -> None:
            sets = [peers_of(i, r) for i in range(N)]
            results = await at_once([w.db.write(qrep.sync_config_peers, rows, float(r))
                                     for w, rows in zip(ws, sets, strict=True)])
            assert not unexpected(results), results
            stored = {(p.name, p.endpoint) for p in await ws[0].db.read(qrep.list_peers)}
            from_file = await ws[0].db.read(qrep.config_peer_names)
            serial = [{(n, e) for n, e, *_ in rows} for rows in sets]
            assert cli in stored, "the CLI peer was lost"
            assert stored - {cli} in serial, f"stored {sorted(stored)}: no one node's set"
            assert from_file == {n for n, _ in stored} - {"cli"}, f"file peers {sorted(from_file)}"

        await every_round(one_round)

    run_many(db, tmp_path, body)
