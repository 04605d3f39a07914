"""RegistryService against a real SqliteBackend and FilesystemBlobStore: the registry's rules."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from berth.db import registry as q
from berth.db.migrate import sqlalchemy_url, upgrade
from berth.db.sqlite import SqliteBackend
from berth.db.store import Q, Txn
from berth.registry.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestReferenced,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    TagImmutable,
    TagInvalid,
    Unsupported,
)
from berth.registry.manifests import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from berth.registry.model import Referrer, Repository
from berth.registry.service import Manifest, RegistryService
from berth.registry.uploads import Uploads
from berth.storage.filesystem import FilesystemBlobStore

ACCOUNT, REGION = "123456789012", "us-east-1"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "berth.db"
    upgrade(sqlalchemy_url("", path))
    return path


class Node:
    """One registry process: its own backend, uploads and service over the shared data directory."""

    def __init__(self, root: Path, create_on_push: bool) -> None:
        self.db = SqliteBackend(root / "berth.db")
        self.blobs = FilesystemBlobStore(root)
        self.uploads = Uploads(self.db, self.blobs)
        self.service = RegistryService(self.db, self.blobs, self.uploads, create_on_push=create_on_push)

    async def close(self) -> None:
        self.uploads.close()
        await self.db.close()


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    def node(self, create_on_push: bool = True) -> RegistryService:
        n = Node(self.root, create_on_push)
        self.nodes.append(n)
        return n.service

    def run(self, body: Callable[[RegistryService], Awaitable[Any]], create_on_push: bool = True) -> Any:
        async def main() -> Any:
            try:
                return await body(self.node(create_on_push))
            finally:
                for n in self.nodes:
                    await n.close()
                self.nodes.clear()

        return asyncio.run(main())


@pytest.fixture
def env(tmp_path: Path, migrated: Path) -> Env:
    shutil.copyfile(migrated, tmp_path / "berth.db")
    return Env(tmp_path)


# real content: blobs uploaded through the service, manifests naming them by their real digests

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(svc: RegistryService, repo: Repository, data: bytes, media_type: str) -> dict[str, Any]:
    async def repo_id() -> int:
        return repo.id

    await svc.uploads.put(repo_id, sha256(data), stream(data), len(data))
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=3).encode()


async def push_image(svc: RegistryService, repo: Repository, seed: str, tag: str | None = None,
                     **extra: Any) -> Manifest:
    config = await push_blob(svc, repo, json.dumps({"seed": seed, "os": "linux"}).encode(), OCI_CONFIG)
    layer = await push_blob(svc, repo, f"layer of {seed}".encode() * 100, OCI_LAYER)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer], **extra})
    return await svc.put_manifest(repo, tag or sha256(body), body, OCI_MANIFEST)


async def push_artifact(svc: RegistryService, repo: Repository, subject: Manifest, artifact_type: str,
                        payload: bytes, annotations: dict[str, str] | None = None) -> Manifest:
    await push_blob(svc, repo, b"{}", OCI_EMPTY)
    layer = await push_blob(svc, repo, payload, "application/octet-stream")
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}, "layers": [layer],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.body)},
    }
    if annotations:
        doc["annotations"] = annotations
    body = encode(doc)
    return await svc.put_manifest(repo, sha256(body), body, OCI_MANIFEST)


def index_of(*children: Manifest) -> bytes:
    return encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": c.media_type, "digest": c.digest, "size": len(c.body)} for c in children]})


# repositories

def test_create_on_push_off(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        with pytest.raises(NameUnknown) as info:
            await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        assert info.value.detail == {"name": "team/app"}
        with pytest.raises(NameUnknown):
            await svc.repository(ACCOUNT, REGION, "team/app")
        repo, created = await svc.create_repository(ACCOUNT, REGION, "team/app")
        assert created
        assert await svc.repository(ACCOUNT, REGION, "team/app", for_push=True) == repo

    env.run(body, create_on_push=False)


def test_create_on_push_on(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        with pytest.raises(NameUnknown):
            await svc.repository(ACCOUNT, REGION, "team/app")  # a pull never creates
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        assert (repo.account_id, repo.region, repo.name) == (ACCOUNT, REGION, "team/app")
        assert await svc.repository(ACCOUNT, REGION, "team/app") == repo
        assert await svc.repository(ACCOUNT, REGION, "team/app", for_push=True) == repo
        again, created = await svc.create_repository(ACCOUNT, REGION, "team/app")
        assert (again, created) == (repo, False)
        with pytest.raises(NameUnknown):
            await svc.repository(ACCOUNT, "eu-west-1", "team/app")

    env.run(body, create_on_push=True)


def test_repository_names_are_checked(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        for bad in ["Team/App", "a..b", "", "a" * 257]:
            with pytest.raises(NameInvalid):
                await svc.repository(ACCOUNT, REGION, bad, for_push=True)
            with pytest.raises(NameInvalid):
                await svc.create_repository(ACCOUNT, REGION, bad)
        assert await svc.catalog(ACCOUNT, REGION, "", None) == []

    env.run(body)


def test_catalog(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        for name in ["b", "a/x", "a", "c"]:
            await svc.create_repository(ACCOUNT, REGION, name)
        assert await svc.catalog(ACCOUNT, REGION, "", None) == ["a", "a/x", "b", "c"]
        assert await svc.catalog(ACCOUNT, REGION, "", 2) == ["a", "a/x"]
        assert await svc.catalog(ACCOUNT, REGION, "a/x", 2) == ["b", "c"]
        assert await svc.catalog("999999999999", REGION, "", None) == []

    env.run(body)


# blobs

def test_blobs_read_delete_mount(env: Env) -> None:
    data = bytes(range(256)) * 5000

    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "src", for_push=True)
        other = await svc.repository(ACCOUNT, REGION, "dst", for_push=True)
        d = (await push_blob(svc, repo, data, OCI_LAYER))["digest"]
        assert await svc.blob_size(repo, d) == len(data)
        chunks = [c async for c in svc.read_blob(d, 0, len(data))]
        assert b"".join(chunks) == data and len(chunks) == 2  # 1 MiB reads
        assert b"".join([c async for c in svc.read_blob(d, 1000, 1010)]) == data[1000:1010]
        with pytest.raises(BlobUnknown):
            await svc.blob_size(other, d)
        assert await svc.mount_blob(other, repo, d) == len(data)
        assert await svc.blob_size(other, d) == len(data)
        assert await svc.mount_blob(repo, other, sha256(b"absent")) is None
        await svc.delete_blob(repo, d)
        with pytest.raises(BlobUnknown):
            await svc.blob_size(repo, d)
        with pytest.raises(BlobUnknown):
            await svc.delete_blob(repo, d)
        assert await svc.blob_size(other, d) == len(data)  # unlinking is per repository
        with pytest.raises(DigestInvalid):
            await svc.blob_size(repo, "sha256:short")

    env.run(body)



def test_a_local_blob_file_is_read_through_one_reused_buffer(env: Env) -> None:
    data = os.urandom((2 << 20) + 11)

    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "src", for_push=True)
        d = (await push_blob(svc, repo, data, OCI_LAYER))["digest"]
        path = await svc.blob_file(d, len(data))
        assert path is not None
        for start, end in ((0, len(data)), (5, (1 << 20) + 7), ((1 << 20) - 1, len(data)), (3, 4)):
            chunks = [bytes(c) async for c in svc.read_file(path, start, end)]  # each taken before the next
            assert b"".join(chunks) == data[start:end] and max(map(len, chunks)) <= 1 << 20
        os.truncate(path, len(data) - 1)  # damaged outside Berth: an error, never a short body
        with pytest.raises(OSError, match="shorter than recorded"):
            [c async for c in svc.read_file(path, 0, len(data))]
        assert await svc.blob_file(d, len(data)) is None

    env.run(body)


# manifests

def test_put_and_get_by_tag_and_digest(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        m = await push_image(svc, repo, "one", "latest")
        assert m.digest == sha256(m.body)
        assert m.media_type == OCI_MANIFEST and m.subject is None
        assert await svc.get_manifest(repo, "latest") == m
        assert await svc.get_manifest(repo, "latest") == m  # served from the cache, the same
        assert await svc.get_manifest(repo, m.digest) == m
        by_digest = await push_image(svc, repo, "two")
        assert await svc.get_manifest(repo, by_digest.digest) == by_digest
        assert await svc.list_tags(repo, "", None) == ["latest"]
        with pytest.raises(ManifestUnknown):
            await svc.get_manifest(repo, "missing")
        with pytest.raises(ManifestUnknown):
            await svc.get_manifest(repo, sha256(b"missing"))
        with pytest.raises(TagInvalid):
            await svc.get_manifest(repo, "-bad-tag")
        with pytest.raises(DigestInvalid):
            await svc.get_manifest(repo, "sha256:nothex")

    env.run(body)


def test_exact_bytes_are_kept(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        config = await push_blob(svc, repo, b'{"os":"linux"}', OCI_CONFIG)
        body = (b'{\n  "schemaVersion" : 2,"mediaType":"' + OCI_MANIFEST.encode() + b'",\t"config": '
                + json.dumps(config).encode() + b', "layers": [] }\n\n')
        m = await svc.put_manifest(repo, "odd-spacing", body, f"{OCI_MANIFEST}; charset=utf-8")
        assert (await svc.get_manifest(repo, "odd-spacing")).body == body
        assert m.digest == sha256(body)

    env.run(body)


def test_put_by_digest_must_match(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        config = await push_blob(svc, repo, b"{}", OCI_CONFIG)
        body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []})
        with pytest.raises(DigestInvalid):
            await svc.put_manifest(repo, sha256(b"something else"), body, OCI_MANIFEST)
        sha512 = "sha512:" + hashlib.sha512(body).hexdigest()
        m = await svc.put_manifest(repo, sha512, body, OCI_MANIFEST)
        assert m.digest == sha512
        assert (await svc.get_manifest(repo, sha512)).body == body

    env.run(body)


def test_put_checks_content_and_references(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        other = await svc.repository(ACCOUNT, REGION, "other", for_push=True)
        config = await push_blob(svc, other, b"{}", OCI_CONFIG)  # linked to another repository only
        body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []})
        with pytest.raises(ManifestBlobUnknown) as info:
            await svc.put_manifest(repo, "latest", body, OCI_MANIFEST)
        assert info.value.detail == {"digest": config["digest"]}
        await push_blob(svc, repo, b"{}", OCI_CONFIG)
        missing_layer = {"mediaType": OCI_LAYER, "digest": sha256(b"never pushed"), "size": 12}
        body2 = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [missing_layer]})
        with pytest.raises(ManifestBlobUnknown) as info:
            await svc.put_manifest(repo, "latest", body2, OCI_MANIFEST)
        assert info.value.detail == {"digest": missing_layer["digest"]}
        image = await svc.put_manifest(repo, "latest", body, OCI_MANIFEST)
        ghost = Manifest(sha256(b"ghost"), OCI_MANIFEST, b"ghost", None)
        with pytest.raises(ManifestUnknown) as info:
            await svc.put_manifest(repo, "multi", index_of(image, ghost), OCI_INDEX)
        assert info.value.detail == {"digest": ghost.digest}
        with pytest.raises(ManifestInvalid):
            await svc.put_manifest(repo, "latest", b"{not json", OCI_MANIFEST)
        with pytest.raises(Unsupported):
            await svc.put_manifest(repo, "latest", b'{"schemaVersion": 1}',
                                   "application/vnd.docker.distribution.manifest.v1+prettyjws")
        with pytest.raises(TagInvalid):
            await svc.put_manifest(repo, ".bad", body, OCI_MANIFEST)
        assert await svc.list_tags(repo, "", None) == ["latest"]

    env.run(body)


def test_manifest_with_many_layers(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        config = await push_blob(svc, repo, b"{}", OCI_CONFIG)
        layers = [await push_blob(svc, repo, f"layer {i}".encode(), OCI_LAYER) for i in range(20)]
        body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers})
        m = await svc.put_manifest(repo, "fat", body, OCI_MANIFEST)
        assert (await svc.get_manifest(repo, "fat")).digest == m.digest

    env.run(body)


# the read cache (pull_manifest: the hot path of every pull)

def test_pull_manifest(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        with pytest.raises(NameUnknown):
            await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest")
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        m = await push_image(svc, repo, "one", "latest")
        for _ in range(3):
            assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest") == m
            assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", m.digest) == m
        with pytest.raises(ManifestUnknown):
            await svc.pull_manifest(ACCOUNT, REGION, "team/app", "other")
        with pytest.raises(NameInvalid):
            await svc.pull_manifest(ACCOUNT, REGION, "Team/App", "latest")

    env.run(body)


def test_cache_invalidated_after_a_write(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        first = await push_image(svc, repo, "first", "latest")
        assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest") == first  # now cached
        assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest") == first
        second = await push_image(svc, repo, "second", "latest")
        assert second.digest != first.digest
        assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest") == second
        assert await svc.get_manifest(repo, "latest") == second
        await svc.delete_manifest(repo, "latest")
        with pytest.raises(ManifestUnknown):
            await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest")
        await svc.put_manifest(repo, "latest", first.body, OCI_MANIFEST)
        assert await svc.pull_manifest(ACCOUNT, REGION, "team/app", "latest") == first

    env.run(body)


def test_cache_invalidated_by_another_node(env: Env) -> None:
    async def body(a: RegistryService) -> None:
        b = env.node()

        async def pull(ref: str) -> object:  # each request runs in its own task, as under the server
            return await asyncio.create_task(a.pull_manifest(ACCOUNT, REGION, "team/app", ref))

        repo_a = await a.repository(ACCOUNT, REGION, "team/app", for_push=True)
        first = await push_image(a, repo_a, "first", "latest")
        assert await pull("latest") == first  # cached on node A
        repo_b = await b.repository(ACCOUNT, REGION, "team/app")
        second = await push_image(b, repo_b, "second", "latest")  # node B moves the tag
        assert await pull("latest") == second
        await b.delete_manifest(repo_b, second.digest)
        with pytest.raises(ManifestUnknown):
            await pull("latest")
        with pytest.raises(ManifestUnknown):
            await pull(second.digest)

    env.run(body)


def test_repository_cache_sees_changed_settings(env: Env) -> None:
    def make_immutable(repo_id: int) -> Txn[int]:
        n = yield Q("UPDATE repositories SET tag_mutability = 'IMMUTABLE' WHERE id = ?", (repo_id,))
        return int(n)

    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        await push_image(svc, repo, "first", "v1")
        assert (await svc.repository(ACCOUNT, REGION, "team/app")).mutability.mode == "MUTABLE"  # cached
        await svc.db.write(make_immutable, repo.id)
        repo = await svc.repository(ACCOUNT, REGION, "team/app")
        assert repo.mutability.mode == "IMMUTABLE"
        with pytest.raises(TagImmutable):
            await push_image(svc, repo, "second", "v1")

    env.run(body)


# tag immutability

def test_immutable_tags(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        row, _ = await svc.db.write(q.create_repository, ACCOUNT, REGION, "locked", 0.0, "IMMUTABLE_WITH_EXCLUSION",
                                    [{"filter": "latest", "filterType": "WILDCARD"}])
        repo = Repository.from_row(row)
        v1 = await push_image(svc, repo, "one", "v1")
        assert (await push_image(svc, repo, "one", "v1")).digest == v1.digest  # the same content again: fine
        with pytest.raises(TagImmutable) as info:
            await push_image(svc, repo, "two", "v1")
        assert info.value.detail == {"tag": "v1"}
        assert (await svc.get_manifest(repo, "v1")).digest == v1.digest
        two = await push_image(svc, repo, "two", "v2")  # a new tag: fine
        await push_image(svc, repo, "one", "latest")
        assert (await push_image(svc, repo, "two", "latest")).digest == two.digest  # excluded: may move
        assert (await svc.get_manifest(repo, "latest")).digest == two.digest

    env.run(body)


# referrers

def test_referrers(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        image = await push_image(svc, repo, "subject", "latest")
        sig = await push_artifact(svc, repo, image, SIG_TYPE, b"signature", {"created": "2024-01-01"})
        sbom = await push_artifact(svc, repo, image, SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}')
        assert sig.subject == image.digest
        await push_image(svc, repo, "unrelated")

        expected = sorted([
            Referrer(sig.digest, OCI_MANIFEST, SIG_TYPE, len(sig.body), {"created": "2024-01-01"}),
            Referrer(sbom.digest, OCI_MANIFEST, SBOM_TYPE, len(sbom.body), None),
        ], key=lambda e: e.digest)
        assert await svc.referrers(repo, image.digest) == expected

        only_sboms = await svc.referrers(repo, image.digest, [SBOM_TYPE])
        assert [e.digest for e in only_sboms] == [sbom.digest]
        assert await svc.referrers(repo, image.digest, ["application/x-none"]) == []
        assert await svc.referrers(repo, sha256(b"no such subject")) == []
        with pytest.raises(DigestInvalid):
            await svc.referrers(repo, "latest")

    env.run(body)


def test_referrer_pushed_before_its_subject(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        future = Manifest(sha256(b"not yet pushed"), OCI_MANIFEST, b"not yet pushed", None)
        sig = await push_artifact(svc, repo, future, SIG_TYPE, b"early signature")
        assert [e.digest for e in await svc.referrers(repo, future.digest)] == [sig.digest]

    env.run(body)


def test_image_manifest_artifact_type_defaults_to_config_media_type(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        subject = await push_image(svc, repo, "subject")
        config = await push_blob(svc, repo, b'{"helm": true}', "application/vnd.cncf.helm.config.v1+json")
        body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
                       "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": len(subject.body)}})
        await svc.put_manifest(repo, sha256(body), body, None)
        found = await svc.referrers(repo, subject.digest, ["application/vnd.cncf.helm.config.v1+json"])
        assert [e.digest for e in found] == [sha256(body)]

    env.run(body)


# deletion rules

def test_delete_by_tag_keeps_the_manifest(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        m = await push_image(svc, repo, "one", "latest")
        await svc.put_manifest(repo, "v1", m.body, OCI_MANIFEST)
        await svc.delete_manifest(repo, "latest")
        assert await svc.list_tags(repo, "", None) == ["v1"]
        assert await svc.get_manifest(repo, m.digest) == m
        with pytest.raises(ManifestUnknown) as info:
            await svc.delete_manifest(repo, "latest")
        assert info.value.detail == {"tag": "latest"}
        with pytest.raises(TagInvalid):
            await svc.delete_manifest(repo, "-x")

    env.run(body)


def test_delete_by_digest_removes_its_tags(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        m = await push_image(svc, repo, "one", "latest")
        await svc.put_manifest(repo, "v1", m.body, OCI_MANIFEST)
        keep = await push_image(svc, repo, "two", "keep")
        await svc.delete_manifest(repo, m.digest)
        assert await svc.list_tags(repo, "", None) == ["keep"]
        with pytest.raises(ManifestUnknown):
            await svc.get_manifest(repo, m.digest)
        with pytest.raises(ManifestUnknown):
            await svc.get_manifest(repo, "latest")
        with pytest.raises(ManifestUnknown) as info:
            await svc.delete_manifest(repo, m.digest)
        assert info.value.detail == {"digest": m.digest}
        with pytest.raises(DigestInvalid):
            await svc.delete_manifest(repo, "sha256:1234")
        assert await svc.get_manifest(repo, "keep") == keep

    env.run(body)


def test_delete_of_an_index_child_is_refused(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        amd64, arm64 = await push_image(svc, repo, "amd64"), await push_image(svc, repo, "arm64")
        index = await svc.put_manifest(repo, "multi", index_of(amd64, arm64), OCI_INDEX)
        assert (await svc.get_manifest(repo, "multi")).media_type == OCI_INDEX
        with pytest.raises(ManifestReferenced) as info:
            await svc.delete_manifest(repo, amd64.digest)
        assert info.value.detail == {"digest": amd64.digest}
        assert await svc.get_manifest(repo, amd64.digest) == amd64
        await svc.delete_manifest(repo, index.digest)
        await svc.delete_manifest(repo, amd64.digest)
        await svc.delete_manifest(repo, arm64.digest)
        with pytest.raises(ManifestUnknown):
            await svc.get_manifest(repo, "multi")

    env.run(body)


def test_list_tags(env: Env) -> None:
    async def body(svc: RegistryService) -> None:
        repo = await svc.repository(ACCOUNT, REGION, "team/app", for_push=True)
        m = await push_image(svc, repo, "one", "v2")
        for tag in ["v10", "v1", "latest", "Latest"]:
            await svc.put_manifest(repo, tag, m.body, OCI_MANIFEST)
        assert await svc.list_tags(repo, "", None) == ["Latest", "latest", "v1", "v10", "v2"]
        assert await svc.list_tags(repo, "", 2) == ["Latest", "latest"]
        assert await svc.list_tags(repo, "latest", 2) == ["v1", "v10"]
        assert await svc.list_tags(repo, "v2", None) == []

    env.run(body)
