"""Notary Project envelopes (the real `notation verify` checks them in tests/integration/scanning/test_signing.py):
the certificate is the same for the same key, the JWS verifies with it, and a key Notary has no algorithm
for is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from berth.scanning import notary, signing

TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64, "size": 7}


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: ec.generate_private_key(ec.SECP384R1()),
                                  lambda: rsa.generate_private_key(65537, 2048)])
def test_envelope_verifies_with_the_stable_certificate(make: object) -> None:
    private, _ = signing._pems(make())  # type: ignore[operator]
    assert notary.certificate(private, "p") == notary.certificate(private, "p")
    doc = json.loads(notary.envelope(private, "p", TARGET, 1_700_000_000))
    cert = x509.load_der_x509_certificate(base64.b64decode(doc["header"]["x5c"][0]))
    assert base64.b64decode(doc["header"]["x5c"][0]) == notary.certificate(private, "p")
    protected = json.loads(_unb64(doc["protected"]))
    assert protected["cty"] == notary.PAYLOAD_TYPE and protected["io.cncf.notary.signingTime"] == "2023-11-14T22:13:20Z"
    assert json.loads(_unb64(doc["payload"])) == {"targetArtifact": TARGET}
    data, sig = f"{doc['protected']}.{doc['payload']}".encode(), _unb64(doc["signature"])
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        n = len(sig) // 2
        der = encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
        key.verify(der, data, ec.ECDSA(hashes.SHA256() if protected["alg"] == "ES256" else hashes.SHA384()))
    else:
        assert isinstance(key, rsa.RSAPublicKey) and protected["alg"] == "PS256"
        key.verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_p521_is_refused() -> None:
    private, _ = signing._pems(ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(ValueError):
        notary.envelope(private, "p", TARGET, 0)
