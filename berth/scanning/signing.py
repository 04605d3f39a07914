"""Managed signing, as ECR's: rules with repository filters select images that Berth signs on push (a job
after the push commits), with the key of the signing profile the rule names. Berth holds the keys
(ECDSA P-256, generated on first use or imported) and publishes the public keys.

Signatures are stored in the sigstore/cosign format that skopeo and podman verify with a `sigstoreSigned`
policy: an OCI image manifest tagged `sha256-<hex>.sig` in the image's repository, whose one layer is the
"simple signing" payload (application/vnd.dev.cosign.simplesigning.v1+json) naming the image's digest
and reference, with the base64 ECDSA signature of that payload in the layer's
`dev.cosignproject.cosign/signature` annotation. Beside it, a Notary Project signature (berth/scanning/notary.py),
as a referrer of the image, which `notation verify` checks with the profile's certificate."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from berth.db import registry as qr
from berth.db import scanning as qs
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.keys import MasterKey, sealed_column
from berth.registry.model import Repository
from berth.registry.service import RegistryService
from berth.scanning import notary
from berth.scanning.errors import ScanError

log = logging.getLogger(__name__)

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class SigningConfigurationNotFound(ScanError):
    code = "SIGNING_CONFIGURATION_NOT_FOUND"


class BadSigningConfiguration(ScanError):
    code = "INVALID_PARAMETER"


def profile_name(arn: str) -> str:
    """arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME -> NAME (a bare name is taken as is)."""
    return arn.rstrip("/").rsplit("/", 1)[-1]


def new_key() -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return _pems(key)


def _pems(key: Any) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def load_key(pem: bytes, password: bytes | None = None) -> tuple[str, str]:
    """An imported private key (ECDSA P-256/P-384 or RSA, PEM) as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = serialization.load_pem_private_key(pem, password)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("a signing key must be ECDSA or RSA")
    return _pems(key)


def sign(private_pem: str, payload: bytes) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = serialization.load_pem_private_key(private_pem.encode(), None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("unsupported key")
    return base64.b64encode(sig).decode()


def payload(reference: str, digest: str) -> bytes:
    """The simple-signing payload cosign writes (and containers/image verifies)."""
    doc = {"critical": {"identity": {"docker-reference": reference}, "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"}, "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def signature_manifest(body: bytes, signature: str) -> tuple[bytes, bytes]:
    """(config, manifest) of the signature artifact for payload `body`."""
    layer_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}},
                        separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config),
                           "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
                "layers": [{"mediaType": SIMPLE_SIGNING, "size": len(body), "digest": layer_digest,
                            "annotations": {SIGNATURE_ANNOTATION: signature}}]}
    return config, json.dumps(manifest, separators=(",", ":")).encode()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


PRIVATE_KEYS = sealed_column("signing_profiles")  # the profiles' private keys, sealed with the master key


class SigningService:
    def __init__(self, db: Backend, registry: RegistryService | None = None, reference_host: str = "",
                 clock: Callable[[], float] = time.time, keys: MasterKey | None = None) -> None:
        self.db = db
        self.registry = registry
        self.reference_host = reference_host  # the host:port clients name images by, in the signed reference
        self.clock = clock
        self.keys = keys  # seals and opens the private keys (None: plain text, in unit tests only)

    def _seal(self, account: str, name: str, private: str) -> str:
        return private if self.keys is None else self.keys.seal(private, PRIVATE_KEYS.context(f"{account}/{name}"))

    def _open(self, account: str, name: str, stored: str) -> str:
        return stored if self.keys is None else self.keys.open(stored, PRIVATE_KEYS.context(f"{account}/{name}"))

    async def config(self, account: str, region: str) -> list[dict[str, Any]]:
        rules = await self.db.read(qs.get_signing_config, account, region)
        if rules is None:
            raise SigningConfigurationNotFound(f"Signing configuration not found for registry '{account}'")
        return rules

    async def put_config(self, account: str, region: str, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        cleaned: list[dict[str, Any]] = []
        for rule in rules:
            arn = rule.get("signingProfileArn")
            if not isinstance(arn, str) or not profile_name(arn):
                raise BadSigningConfiguration("Each signing rule needs a signingProfileArn")
            filters = [{"filter": str(f["filter"]), "filterType": str(f.get("filterType", "WILDCARD_MATCH"))}
                       for f in rule.get("repositoryFilters") or []]
            cleaned.append({"signingProfileArn": arn, "repositoryFilters": filters})
            await self.ensure_key(account, profile_name(arn))  # every profile has a key from now on
        await self.db.write(qs.put_signing_config, account, region, cleaned)
        return cleaned

    async def delete_config(self, account: str, region: str) -> list[dict[str, Any]]:
        rules = await self.db.write(qs.delete_signing_config, account, region)
        if rules is None:
            raise SigningConfigurationNotFound(f"Signing configuration not found for registry '{account}'")
        return rules

    async def ensure_key(self, account: str, name: str) -> str:
        """The profile's public key PEM, generating its key pair on first use."""
        got = await self.db.read(qs.get_profile_key, account, name)
        if got is None:
            private, public = new_key()
            await self.db.write(qs.put_profile_key, account, name, self._seal(account, name, private), public,
                                self.clock(), False)
            got = await self.db.read(qs.get_profile_key, account, name)
            assert got is not None
        return got[1]

    async def import_key(self, account: str, name: str, pem: bytes, password: bytes | None = None) -> str:
        private, public = load_key(pem, password)
        await self.db.write(qs.put_profile_key, account, name, self._seal(account, name, private), public,
                            self.clock(), True)
        return public

    async def public_key(self, account: str, name: str) -> str | None:
        got = await self.db.read(qs.get_profile_key, account, name)
        return None if got is None else got[1]

    async def certificate(self, account: str, name: str) -> str | None:
        """The profile's Notary Project certificate (PEM), for notation's trust store."""
        got = await self.db.read(qs.get_profile_key, account, name)
        return None if got is None else notary.certificate_pem(self._open(account, name, got[0]), name)

    async def _notary(self, repo: Repository, profile: str, private: str, target: dict[str, Any]) -> None:
        """The Notary Project signature of `target`, as a referrer (pushed by digest, no tag)."""
        assert self.registry is not None
        now = self.clock()
        jws = notary.envelope(private, profile, target, now)
        body = notary.signature_manifest(jws, notary.certificate(private, profile), target, now)
        for blob in (jws, b"{}"):
            d = "sha256:" + hashlib.sha256(blob).hexdigest()

            async def rid(repo: Repository = repo) -> int:
                return repo.id

            await self.registry.uploads.put(rid, d, _once(blob), len(blob))
        await self.registry.put_manifest(repo, "sha256:" + hashlib.sha256(body).hexdigest(), body, OCI_MANIFEST)

    async def statuses(self, repo: Repository, digest: str) -> list[tuple[str, str, str | None, str | None]]:
        return await self.db.read(qs.signing_statuses, repo.id, digest)

    async def run_sign(self, job: Job) -> None:
        p = job.payload
        repo_id, digest, arn = int(p["repositoryId"]), str(p["digest"]), str(p["profileArn"])
        account, region, name = p["account"], p["region"], p["repository"]
        m = await self.db.read(qr.manifest_by_digest, repo_id, digest)
        if m is None:
            return
        profile = profile_name(arn)
        key = await self.db.read(qs.get_profile_key, account, profile)
        if key is None:
            await self.db.write(qs.finish_signing, repo_id, digest, arn, "FAILED", "SIGNING_PROFILE_NOT_FOUND",
                                f"No key for signing profile {arn}", None, self.clock())
            return
        assert self.registry is not None
        repo = await self.registry.repository(account, region, name)
        reference = f"{self.reference_host}/{name}" if self.reference_host else name
        body = payload(reference, digest)
        config, manifest = signature_manifest(body, sign(self._open(account, profile, key[0]), body))
        for blob in (config, body):
            d = "sha256:" + hashlib.sha256(blob).hexdigest()

            async def rid(repo: Repository = repo) -> int:
                return repo.id

            await self.registry.uploads.put(rid, d, _once(blob), len(blob))
        tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
        sig = await self.registry.put_manifest(repo, tag, manifest, OCI_MANIFEST)
        try:
            await self._notary(repo, profile, self._open(account, profile, key[0]),
                               {"mediaType": m.media_type, "digest": digest, "size": len(m.body)})
        except ValueError as e:  # a key Notary has no algorithm for (e.g. P-521): the cosign signature stands
            log.warning("no Notary Project signature for %s@%s: %s", name, digest, e)
        await self.db.write(qs.finish_signing, repo_id, digest, arn, "COMPLETE", None, None, sig.digest, self.clock())
