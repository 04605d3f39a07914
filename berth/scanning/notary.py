"""Notary Project signatures (what `notation verify` checks, and what ECR's managed signing with AWS Signer
produces): a JWS envelope over the image's descriptor, signed with the profile's key, whose x5c chain is
the profile's certificate; stored as an OCI artifact whose `subject` is the image (found by the referrers
API).

Each profile's certificate is derived from its key, deterministically (fixed names, validity, a serial from
the public key, RFC 6979 ECDSA), so the certificate that `berth signing certificate PROFILE` prints today
is the one in every signature, without storing it: users put it in notation's trust store once. It is a
self-signed code-signing leaf, as `notation cert generate-test` makes."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Any

SIGNATURE_ARTIFACT = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
THUMBPRINTS = "io.cncf.notary.x509chain.thumbprint#S256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def certificate(private_pem: str, profile: str) -> bytes:
    """The profile's certificate (DER), the same for the same key and name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = serialization.load_pem_private_key(private_pem.encode(), None)
    public = key.public_key().public_bytes(serialization.Encoding.DER,  # type: ignore[union-attr]
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Berth managed signing"),
                      x509.NameAttribute(NameOID.COMMON_NAME, profile)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key())  # type: ignore[arg-type]
               .serial_number(int.from_bytes(hashlib.sha256(public).digest()[:16], "big") >> 1 or 1)
               .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
               .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        cert = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    else:
        cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]  # RSA PKCS#1 v1.5: deterministic
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_pem(private_pem: str, profile: str) -> str:
    der = base64.encodebytes(certificate(private_pem, profile)).decode()
    return f"-----BEGIN CERTIFICATE-----\n{der}-----END CERTIFICATE-----\n"


def _alg(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(private_pem.encode(), None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size not in (256, 384):
            raise ValueError("Notary Project signatures take ECDSA P-256 or P-384 keys")
        return "ES256" if key.curve.key_size == 256 else "ES384"
    return "PS256"


def _sign(private_pem: str, data: bytes) -> tuple[str, bytes]:
    """(JWS alg, signature) with the profile's key: ES256/ES384 as r||s, or PS256 for RSA (Notary's choices)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(private_pem.encode(), None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        alg, digest = ("ES256", hashes.SHA256()) if key.curve.key_size == 256 else ("ES384", hashes.SHA384())
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return alg, r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256().digest_size),
                       hashes.SHA256())
        return "PS256", sig
    raise ValueError("unsupported key")


def envelope(private_pem: str, profile: str, target: dict[str, Any], now: float) -> bytes:
    """The JWS (flattened JSON serialization) Notary verifies for the target descriptor."""
    signed_at = datetime.datetime.fromtimestamp(int(now), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps({"targetArtifact": target}, separators=(",", ":")).encode()
    cert = certificate(private_pem, profile)
    protected = json.dumps({"alg": _alg(private_pem), "crit": ["io.cncf.notary.signingScheme"], "cty": PAYLOAD_TYPE,
                            "io.cncf.notary.signingScheme": "notary.x509", "io.cncf.notary.signingTime": signed_at},
                           separators=(",", ":")).encode()
    signing_input = f"{_b64url(protected)}.{_b64url(body)}".encode()
    _, signature = _sign(private_pem, signing_input)
    doc = {"payload": _b64url(body), "protected": _b64url(protected),
           "header": {"x5c": [base64.b64encode(cert).decode()], "io.cncf.notary.signingAgent": "Berth"},
           "signature": _b64url(signature)}
    return json.dumps(doc, separators=(",", ":")).encode()


def signature_manifest(jws: bytes, cert: bytes, target: dict[str, Any], now: float) -> bytes:
    created = datetime.datetime.fromtimestamp(int(now), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE_ARTIFACT,
                "config": {"mediaType": OCI_EMPTY, "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
                           "size": 2},
                "layers": [{"mediaType": JWS, "digest": "sha256:" + hashlib.sha256(jws).hexdigest(),
                            "size": len(jws)}],
                "subject": target,
                "annotations": {THUMBPRINTS: json.dumps([hashlib.sha256(cert).hexdigest()]),
                                "org.opencontainers.image.created": created}}
    return json.dumps(manifest, separators=(",", ":")).encode()
