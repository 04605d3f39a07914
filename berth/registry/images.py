"""The ECR "image" view of the registry: a manifest digest in a repository with its tags, push time,
last pull time, size and media types; image ids (tag and/or digest) and their per-item failures; and
layer uploads in ECR's part-by-part form.

Everything here goes through the same RegistryService and Uploads as the OCI face: a PutImage and a
`PUT /v2/<name>/manifests/<ref>` run the same checks, and an upload started with InitiateLayerUpload
is an ordinary upload session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

from berth.db import images as qi
from berth.db import registry as q
from berth.db.images import ImageRow
from berth.registry.errors import (
    BlobUnknown,
    DigestInvalid,
    EmptyUpload,
    ImageDigestMismatch,
    ImageIdInvalid,
    LayerAlreadyExists,
    LayerInaccessible,
    LayerInvalid,
    LayerPartInvalid,
    ManifestReferenced,
    ManifestUnknown,
    NameUnknown,
    ReferencedImagesUnknown,
    RegistryError,
    TagInvalid,
    UploadOutOfOrder,
)
from berth.registry.model import ImageFailure, ImageId, ImageView, LayerFailure, LayerInfo, Referrer, Repository
from berth.registry.names import check_digest, check_tag
from berth.registry.service import Manifest, RegistryService
from berth.registry.uploads import UploadIds

PART_SIZE = 10 * 1024 * 1024  # what InitiateLayerUpload asks clients to send per UploadLayerPart











# Per-item failure codes (ECR's ImageFailureCode / LayerFailureCode vocabulary).
IMAGE_NOT_FOUND = "ImageNotFound"
INVALID_DIGEST = "InvalidImageDigest"
INVALID_TAG = "InvalidImageTag"
TAG_MISMATCH = "ImageTagDoesNotMatchDigest"
MISSING_ID = "MissingDigestAndTag"
REFERENCED = "ImageReferencedByManifestList"
INACCESSIBLE = "ImageInaccessible"  # archived (berth/lifecycle)
# a pull-through upstream's refusal of one image (berth/replication/pullthrough_client.py's kinds)
UPSTREAM_FAILURES = frozenset({"UpstreamAccessDenied", "UpstreamTooManyRequests", "UpstreamUnavailable"})
INVALID_LAYER_DIGEST = "InvalidLayerDigest"
MISSING_LAYER_DIGEST = "MissingLayerDigest"


def _view(row: ImageRow, tags: list[str]) -> ImageView:
    artifact = None
    try:
        doc = json.loads(row.body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        explicit = doc.get("artifactType")
        config = doc.get("config")
        if isinstance(explicit, str):
            artifact = explicit
        elif isinstance(config, dict) and isinstance(config.get("mediaType"), str):
            artifact = config["mediaType"]
    size = row.image_size if row.children_max_size is None else row.children_max_size
    return ImageView(row.digest, tags, size, row.pushed_at, row.last_pulled_at, row.media_type, artifact,
                     row.subject_digest, row.status, row.archived_at, row.activated_at)


def _descriptor_type(body: bytes, digest: str) -> str | None:
    """The mediaType a manifest gives the blob `digest` (its config or one of its layers)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    layers = doc.get("layers")
    for d in [doc.get("config"), *(layers if isinstance(layers, list) else [])]:
        if isinstance(d, dict) and d.get("digest") == digest and isinstance(d.get("mediaType"), str):
            return str(d["mediaType"])
    return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Images:
    """The ECR image and layer operations, over the RegistryService (wired once in app.py)."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry
        self.db = registry.db

    # listing and describing

    async def list_ids(self, repo: Repository, tag_status: str, after: tuple[str, str],
                       limit: int, image_status: str = "ACTIVE") -> list[tuple[str, str | None]]:
        return [(k.digest, k.tag) for k in await self.db.read(qi.list_image_ids, repo.id, tag_status, after, limit,
                                                              image_status)]

    async def list_views(self, repo: Repository, tag_status: str, after: str, limit: int,
                         image_status: str = "ACTIVE") -> list[ImageView]:
        rows = await self.db.read(qi.list_images, repo.id, tag_status, after, limit, image_status)
        tags = await self.db.read(qi.tags_of, repo.id, [r.digest for r in rows]) if rows else {}
        return [_view(r, tags.get(r.digest, [])) for r in rows]

    async def describe(self, repo: Repository, ids: Sequence[ImageId]) -> list[ImageView]:
        """The images `ids` name, once each in request order; ManifestUnknown for the first that names none."""
        digests: list[str] = []
        for image_id in ids:
            digest = await self._resolve(repo, image_id)
            if digest is None:
                raise ManifestUnknown("image not found", detail=image_id)
            if digest not in digests:
                digests.append(digest)
        rows = await self.db.read(qi.images_by_digest, repo.id, digests)
        tags = await self.db.read(qi.tags_of, repo.id, digests)
        return [_view(rows[d], tags.get(d, [])) for d in digests if d in rows]

    async def _resolve(self, repo: Repository, image_id: ImageId) -> str | None:
        """The digest an image id names, None if none; syntax errors raise (DigestInvalid, TagInvalid)."""
        if image_id.digest is None and image_id.tag is None:
            raise ImageIdInvalid("an image id needs an imageDigest or an imageTag")
        if image_id.digest is not None:
            check_digest(image_id.digest)
        if image_id.tag is not None:
            check_tag(image_id.tag)
            digest = await self.db.read(q.tag_digest, repo.id, image_id.tag)
            if digest is None or (image_id.digest is not None and digest != image_id.digest):
                return None
            return digest
        assert image_id.digest is not None
        present = await self.db.read(q.present_manifests, repo.id, [image_id.digest])
        return image_id.digest if present else None

    # BatchGetImage

    async def get(self, repo: Repository, ids: Sequence[ImageId], accepted: Sequence[str] | None,
                  principal: str | None = None) -> tuple[list[tuple[ImageId, Manifest]], list[ImageFailure]]:
        return await self.pull(repo.account_id, repo.region, repo.name, ids, accepted, principal)

    async def pull(self, account: str, region: str, name: str, ids: Sequence[ImageId],
                   accepted: Sequence[str] | None, principal: str | None = None,
                   may_import: Callable[[bool], Awaitable[None]] | None = None,
                   ) -> tuple[list[tuple[ImageId, Manifest]], list[ImageFailure]]:
        """BatchGetImage: each id through RegistryService.pull_manifest, the /v2 face's pull, so that a miss
        under a pull-through cache rule is fetched from the upstream the same way (after `may_import`).
        NameUnknown when the repository does not exist and no rule covers it; an upstream's refusal is the
        image's failure (ECR's Upstream* codes); UpstreamImageUnavailable when the rule cannot reach it at all."""
        found: list[tuple[ImageId, Manifest]] = []
        failures: list[ImageFailure] = []
        for image_id in _well_formed(ids, failures):
            ref = image_id.digest if image_id.digest is not None else image_id.tag
            assert ref is not None
            try:
                m = await self.registry.pull_manifest(account, region, name, ref, record=False,
                                                      may_import=may_import)
                if image_id.digest is not None and image_id.tag is not None:
                    tagged = await self.registry.pull_manifest(account, region, name, image_id.tag, record=False,
                                                               may_import=may_import)
                    if tagged.digest != image_id.digest:
                        failures.append(ImageFailure(image_id, TAG_MISMATCH, "Invalid image tag for image with digest"))
                        continue
            except ManifestUnknown as e:
                failures.append(await self._missing(account, region, name, image_id, ref, e))
                continue
            if accepted is not None and m.media_type not in accepted:
                # No manifest conversion here: an image in none of the accepted types is not found.
                failures.append(ImageFailure(image_id, IMAGE_NOT_FOUND,
                                             f"Requested image not found in the accepted media types "
                                             f"(it is {m.media_type})"))
                continue
            self.registry.note_pull(account, region, name, m.digest, principal)
            found.append((ImageId(m.digest, image_id.tag), m))
        return found, failures

    async def _missing(self, account: str, region: str, name: str, image_id: ImageId, ref: str,
                       e: RegistryError) -> ImageFailure:
        reason = e.detail.get("reason") if isinstance(e.detail, dict) else None
        if reason in UPSTREAM_FAILURES:
            return ImageFailure(image_id, reason, e.message)
        try:
            repo = await self.registry.repository(account, region, name)
        except NameUnknown:
            return ImageFailure(image_id, IMAGE_NOT_FOUND, "Requested image not found")
        status = await self.db.read(qi.unavailable, repo.id, ref)
        if status is None:
            return ImageFailure(image_id, IMAGE_NOT_FOUND, "Requested image not found")
        return ImageFailure(image_id, INACCESSIBLE, f"The image is {status.lower()}: restore it with "
                                                    "UpdateImageStorageClass first")

    # BatchDeleteImage

    async def delete(self, repo: Repository, ids: Sequence[ImageId]) -> tuple[list[ImageId], list[ImageFailure]]:
        """BatchDeleteImage: each id through RegistryService.delete_image / remove_tag (the OCI face's paths),
        with ECR's rule that an image's last tag takes the image; each refusal becomes a per-item failure."""
        deleted: list[ImageId] = []
        failures: list[ImageFailure] = []
        for image_id in _well_formed(ids, failures):
            try:
                if image_id.tag is not None:
                    d = await self.registry.remove_tag(repo, image_id.tag, image_id.digest, last_takes_image=True)
                    deleted.append(ImageId(d.digest, image_id.tag))
                    continue
                assert image_id.digest is not None
                d = await self.registry.delete_image(repo, image_id.digest)
            except ManifestUnknown:
                failures.append(ImageFailure(image_id, IMAGE_NOT_FOUND, "Requested image not found"))
            except ImageDigestMismatch:
                failures.append(ImageFailure(image_id, TAG_MISMATCH, "Invalid image tag for image with digest"))
            except ManifestReferenced as e:
                failures.append(ImageFailure(image_id, REFERENCED, f"Requested image referenced by manifest list: "
                                                                   f"{e.extra['parents']}"))
            else:
                deleted += [ImageId(image_id.digest, t) for t in d.tags] or [ImageId(image_id.digest)]
        return deleted, failures

    # PutImage

    async def put(self, repo: Repository, body: bytes, media_type: str | None, tag: str | None,
                  digest: str | None) -> Manifest:
        """Store a manifest through RegistryService.put_manifest, with ECR's extra refusals (in its transaction)."""
        if digest is not None:
            check_digest(digest)
            algorithm = digest.split(":", 1)[0]
            actual = f"{algorithm}:" + hashlib.new(algorithm, body).hexdigest()
            if actual != digest:
                raise ImageDigestMismatch(f"Manifest digest {actual} does not match the provided digest {digest}",
                                          detail={"digest": digest})
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        if tag is not None:
            check_tag(tag)
        try:
            return await self.registry.put_manifest(repo, tag or digest or computed, body, media_type, only_new=True)
        except ManifestUnknown as e:  # only raised for an index's missing children
            raise ReferencedImagesUnknown(f"The manifest list references an image that does not exist in the "
                                          f"repository: {e.detail}", detail=e.detail) from None

    # ListImageReferrers

    async def referrers(self, repo: Repository, subject: str, artifact_types: Sequence[str] | None,
                        after: str, limit: int,
                        may_import: Callable[[bool], Awaitable[None]] | None = None) -> list[Referrer]:
        """The manifests whose subject is `subject`, digest order after `after`, at most `limit` (under a
        pull-through cache rule, the upstream's too: RegistryService.referrers)."""
        found = await self.registry.referrers(repo, subject, artifact_types, may_import)
        return [r for r in found if r.digest > after][:limit]

    # layers

    async def start_upload(self, repo: Repository) -> str:
        """An upload session with the UUID id ECR's model requires."""
        return await self.registry.uploads.start(repo.id, UploadIds.UUID)

    async def upload_part(self, repo: Repository, upload_id: str, first: int, last: int, data: bytes) -> int:
        """Append one part, which must start where the upload stands; the new size."""
        uploads = self.registry.uploads
        size = await uploads.status(repo.id, upload_id)
        if first != size or last < first or last - first + 1 != len(data):
            raise LayerPartInvalid(
                f"The part [{first}, {last}] of {len(data)} bytes does not continue the upload, which holds "
                f"{size} bytes", received=size)
        try:
            return await uploads.append(repo.id, upload_id, _one(data), (first, last), len(data))
        except UploadOutOfOrder as e:  # another part got there first
            raise LayerPartInvalid(e.message, received=e.extra.get("size", size)) from None

    async def complete_upload(self, repo: Repository, upload_id: str, digest: str) -> str:
        check_digest(digest)
        uploads = self.registry.uploads
        if await uploads.status(repo.id, upload_id) == 0:
            raise EmptyUpload(f"The layer upload with upload id '{upload_id}' contains no layer parts")
        existed = await self.db.read(q.repo_blob_size, repo.id, digest) is not None
        try:
            await uploads.complete(repo.id, upload_id, digest, None, None)
        except DigestInvalid:
            raise LayerInvalid(f"The digest of the uploaded layer does not match the digest {digest}") from None
        if existed:  # verified and stored all the same; ECR reports that the repository had it already
            raise LayerAlreadyExists(f"The layer '{digest}' already exists in the repository with name "
                                     f"'{repo.name}' in registry with id '{repo.account_id}'")
        return digest

    async def layers(self, repo: Repository, digests: Sequence[str]) -> tuple[list[LayerInfo], list[LayerFailure]]:
        failures: list[LayerFailure] = []
        valid: list[str] = []
        for d in dict.fromkeys(digests):
            if not d:
                failures.append(LayerFailure(d, MISSING_LAYER_DIGEST, "Missing layer digest"))
                continue
            try:
                check_digest(d)
            except DigestInvalid:
                failures.append(LayerFailure(d, INVALID_LAYER_DIGEST, f"Invalid layer digest {d!r}"))
                continue
            valid.append(d)
        sizes = await self.db.read(qi.blob_sizes, repo.id, valid) if valid else {}
        layers: list[LayerInfo] = []
        for d in valid:
            if d not in sizes:
                layers.append(LayerInfo(d, False))
                continue
            body = await self.db.read(qi.blob_referrer_body, repo.id, d)
            layers.append(LayerInfo(d, True, sizes[d], None if body is None else _descriptor_type(body, d)))
        return layers, failures

    async def layer_for_download(self, repo: Repository, digest: str) -> int:
        """The size of a layer an image in the repository uses; BlobUnknown or LayerInaccessible otherwise."""
        check_digest(digest)
        size = await self.db.read(q.repo_blob_size, repo.id, digest)
        if size is None:
            raise BlobUnknown(f"The layer '{digest}' does not exist in the repository with name '{repo.name}' in "
                              f"registry with id '{repo.account_id}'", detail={"digest": digest})
        if await self.db.read(qi.blob_referrer_body, repo.id, digest) is None:
            raise LayerInaccessible(f"The layer '{digest}' is not associated with an image in the repository "
                                    f"with name '{repo.name}'")
        return size


def _well_formed(ids: Sequence[ImageId], failures: list[ImageFailure]) -> Iterator[ImageId]:
    """Each distinct id once; a malformed one is recorded in `failures` instead."""
    for image_id in dict.fromkeys(ids):
        failure = _syntax_failure(image_id)
        if failure is None:
            yield image_id
        else:
            failures.append(failure)


def _syntax_failure(image_id: ImageId) -> ImageFailure | None:
    if image_id.digest is None and image_id.tag is None:
        return ImageFailure(image_id, MISSING_ID, "Missing image digest and tag")
    if image_id.digest is not None:
        try:
            check_digest(image_id.digest)
        except DigestInvalid:
            return ImageFailure(image_id, INVALID_DIGEST, "Invalid request parameters: image digest should satisfy "
                                                          "the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")
    if image_id.tag is not None:
        try:
            check_tag(image_id.tag)
        except TagInvalid:
            return ImageFailure(image_id, INVALID_TAG, "Invalid request parameters: image tag is not valid")
    return None

