"""`berth cert create`: a private CA and a server certificate for the registry's host names.

For sites without their own PKI: the server certificate names `*.dkr.ecr.<region>.<domain>` (every
account's registry host), `api.ecr.<region>.<domain>` for each region, the extra host names and IP
addresses asked for, and localhost / 127.0.0.1. Clients trust `ca.crt` (AWS_CA_BUNDLE, skopeo's and
podman's --cert-dir, docker's certs.d, the system store). An existing ca.crt/ca.key in the output
directory is reused, so a new server certificate keeps the trust clients already have.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth.keys.files import write_private

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest some clients (Apple's) accept for a server certificate


@dataclass(frozen=True)
class Issued:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    names: tuple[str, ...]
    new_ca: bool


def host_names(domain: str, regions: list[str], hosts: list[str]) -> list[str]:
    names = []
    for region in regions:
        names += [f"*.dkr.ecr.{region}.{domain}", f"api.ecr.{region}.{domain}"]
    return list(dict.fromkeys([*names, *hosts, "localhost", "127.0.0.1"]))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_or_make_ca(out: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = out / "ca.crt", out / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Berth"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Berth registry CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, True


def create(out: Path, domain: str, regions: list[str], hosts: list[str], days: int = SERVER_DAYS) -> Issued:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca, ca_key, new_ca = _load_or_make_ca(out, now)
    names = host_names(domain, regions, hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    cn = next((n for n in names if not n.startswith("*")), names[0])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(out / "server.key", _pem_key(key))
    (out / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(out / "ca.crt", out / "ca.key", out / "server.crt", out / "server.key", tuple(names), new_ca)
