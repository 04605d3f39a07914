"""SAML 2.0 federation against a real `berth serve --auth iam` (SQLite and PostgreSQL): SAML providers
made from an IdP's metadata (a key and certificate this test makes), then `aws sts
assume-role-with-saml` with a SAML response the test signs itself (XML-DSig, signxml), and a push and
pull with the session's credentials. Refused: a response whose subject the trust policy does not
allow, one for another audience, one altered after signing, one signed by another key, an expired
one, one that does not name the role; an unsigned assertion slipped in beside the signed one is
never read.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner

from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, basic, client
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

A, REGION = "123456789012", "us-east-1"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
IDP = "https://idp.example.test/saml"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
AWS_AUDIENCE = "https://signin.aws.amazon.com/saml"
ROLE_ARN = f"arn:aws:iam::{A}:role/ci/saml-deployer"
PROVIDER_ARN = f"arn:aws:iam::{A}:saml-provider/corp-idp"
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"


def _key_and_cert(name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


IDP_KEY, IDP_CERT = _key_and_cert("idp.example.test")
OTHER_KEY, OTHER_CERT = _key_and_cert("attacker.example.test")


def metadata(cert: bytes = IDP_CERT) -> str:
    body = "".join(cert.decode().strip().splitlines()[1:-1])
    return (f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{IDP}">'
            '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
            f'<ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>'
            '</md:KeyDescriptor><md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'
            '</md:NameIDFormat><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
            'Location="https://idp.example.test/saml/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>')


def _assertion(subject: str, roles: list[str], audience: str, session: str | None,
               ends: datetime) -> etree._Element:
    now = datetime.now(UTC)
    stamp = (now - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = ends.strftime("%Y-%m-%dT%H:%M:%SZ")
    attributes = "".join(
        f'<saml:Attribute Name="{n}">' + "".join(f"<saml:AttributeValue>{v}</saml:AttributeValue>" for v in vs)
        + "</saml:Attribute>"
        for n, vs in (("https://aws.amazon.com/SAML/Attributes/Role", roles),
                      ("https://aws.amazon.com/SAML/Attributes/RoleSessionName", [session] if session else []))
        if vs)
    text = (f'<saml:Assertion xmlns:saml="{SAML_NS}" ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{stamp}">'
            f"<saml:Issuer>{IDP}</saml:Issuer>"
            '<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">'
            f"{subject}</saml:NameID>"
            '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData NotOnOrAfter="{end}" Recipient="{AWS_AUDIENCE}"/>'
            "</saml:SubjectConfirmation></saml:Subject>"
            f'<saml:Conditions NotBefore="{stamp}" NotOnOrAfter="{end}"><saml:AudienceRestriction>'
            f"<saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{stamp}"><saml:AuthnContext><saml:AuthnContextClassRef>'
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>"
            f"</saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attributes}"
            "</saml:AttributeStatement></saml:Assertion>")
    return etree.fromstring(text)


def saml_response(subject: str = "alice@corp.example", roles: list[str] | None = None,
                  audience: str = AWS_AUDIENCE, session: str | None = "alice", key: bytes = IDP_KEY,
                  cert: bytes = IDP_CERT, ends: datetime | None = None, tamper: bool = False,
                  injected: str | None = None) -> str:
    """A SAML response whose assertion is signed (enveloped, exclusive c14n, RSA-SHA256) with `key`."""
    assertion = _assertion(subject, [f"{ROLE_ARN},{PROVIDER_ARN}"] if roles is None else roles, audience, session,
                           ends or datetime.now(UTC) + timedelta(minutes=5))
    signed = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
        assertion, key=key, cert=cert.decode(), reference_uri="#" + assertion.get("ID"))
    if tamper:
        signed.find(f"{{{SAML_NS}}}Subject/{{{SAML_NS}}}NameID").text = "admin@corp.example"
    response = etree.fromstring(
        f'<samlp:Response xmlns:samlp="{PROTOCOL_NS}" xmlns:saml="{SAML_NS}" ID="_{uuid.uuid4().hex}" Version="2.0" '
        f'IssueInstant="{datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}" Destination="{AWS_AUDIENCE}">'
        f"<saml:Issuer>{IDP}</saml:Issuer><samlp:Status>"
        '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:Response>')
    if injected is not None:  # an unsigned assertion ahead of the signed one (signature wrapping)
        response.append(_assertion(injected, [f"{ROLE_ARN},{PROVIDER_ARN}"], AWS_AUDIENCE, "mallory",
                                   datetime.now(UTC) + timedelta(minutes=5)))
    response.append(signed)
    return base64.b64encode(etree.tostring(response)).decode()


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam`, SQLite and PostgreSQL, shared with the other identity suites


@pytest.fixture(scope="module")
def iam(server: BerthServer) -> BaseClient:
    return client("iam", server.url, KEY, SECRET)


def cli(server: BerthServer, tmp: Path, *args: str, creds: dict[str, str] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(tmp / "no-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-creds"))
    if creds:
        env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                   AWS_SESSION_TOKEN=creds["SessionToken"])
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    return done


def sts_code(server: BerthServer, assertion: str, role: str = ROLE_ARN) -> str:
    sts = client("sts", server.url, "unused", "unused")  # AssumeRoleWithSAML is sent unsigned by botocore
    try:
        sts.assume_role_with_saml(RoleArn=role, PrincipalArn=PROVIDER_ARN, SAMLAssertion=assertion)
    except ClientError as e:
        return str(e.response["Error"]["Code"])
    return "success"


def test_saml_providers_and_assume_role_with_saml(server: BerthServer, iam: BaseClient, tmp_path: Path) -> None:
    # providers: made from metadata, read back, listed, refused when the metadata is not an IdP's
    arn = iam.create_saml_provider(Name="corp-idp", SAMLMetadataDocument=metadata())["SAMLProviderArn"]
    assert arn == PROVIDER_ARN
    got = iam.get_saml_provider(SAMLProviderArn=arn)
    assert got["SAMLMetadataDocument"] == metadata() and len(got["SAMLProviderUUID"]) >= 22
    assert [p["Arn"] for p in iam.list_saml_providers()["SAMLProviderList"]] == [arn]
    with pytest.raises(ClientError) as info:
        iam.create_saml_provider(Name="corp-idp", SAMLMetadataDocument=metadata())
    assert info.value.response["Error"]["Code"] == "EntityAlreadyExists"
    with pytest.raises(ClientError) as info:
        iam.create_saml_provider(Name="broken", SAMLMetadataDocument="<x>" + "y" * 1000 + "</x>")
    assert info.value.response["Error"]["Code"] == "InvalidInput"
    # a role trusting the provider for one subject, with the audience AWS's SAML sign-in uses
    iam.create_role(RoleName="saml-deployer", Path="/ci/", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": PROVIDER_ARN}, "Action": "sts:AssumeRoleWithSAML",
            "Condition": {"StringEquals": {"SAML:aud": AWS_AUDIENCE, "SAML:sub": "alice@corp.example",
                                           "SAML:sub_type": "persistent"}}}]}))
    iam.attach_role_policy(RoleName="saml-deployer", PolicyArn=POWER_USER)
    iam.put_role_policy(RoleName="saml-deployer", PolicyName="create", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:CreateRepository", "Resource": "*"}]}))
    # the real CLI, unsigned as it sends it
    done = cli(server, tmp_path, "sts", "assume-role-with-saml", "--role-arn", ROLE_ARN, "--principal-arn",
               PROVIDER_ARN, "--saml-assertion", saml_response(), "--duration-seconds", "900")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    session_arn = f"arn:aws:sts::{A}:assumed-role/saml-deployer/alice"
    assert out["AssumedRoleUser"]["Arn"] == session_arn and out["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert (out["Subject"], out["SubjectType"], out["Issuer"], out["Audience"]) == (
        "alice@corp.example", "persistent", IDP, AWS_AUDIENCE)
    creds = out["Credentials"]
    me = cli(server, tmp_path, "sts", "get-caller-identity", creds=creds)
    assert me.returncode == 0 and json.loads(me.stdout)["Arn"] == session_arn, me.stderr
    # push and pull with the session's registry token
    login = cli(server, tmp_path, "ecr", "get-login-password", creds=creds)
    assert login.returncode == 0, login.stderr
    image = random_image(layers=1)
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(login.stdout.strip())
        assert oci.push_image("saml/app", image, "v1").status_code == 201
        assert oci.get_manifest("saml/app", "v1").content == image.body
    # refused
    assert sts_code(server, saml_response(subject="bob@corp.example")) == "AccessDenied"  # SAML:sub
    assert sts_code(server, saml_response(audience="https://sp.example.test")) == "InvalidIdentityToken"
    assert sts_code(server, saml_response(tamper=True)) == "InvalidIdentityToken"  # altered after signing
    assert sts_code(server, saml_response(key=OTHER_KEY, cert=OTHER_CERT)) == "InvalidIdentityToken"
    assert sts_code(server, saml_response(ends=datetime.now(UTC) - timedelta(seconds=1))) == "ExpiredTokenException"
    assert sts_code(server, saml_response(roles=[f"arn:aws:iam::{A}:role/other,{PROVIDER_ARN}"])) == "AccessDenied"
    assert sts_code(server, saml_response(session=None)) == "InvalidIdentityToken"
    assert sts_code(server, base64.b64encode(b"<samlp:Response/>").decode()) == "InvalidIdentityToken"
    # an unsigned assertion for another subject ahead of the signed one is never read
    sts = client("sts", server.url, "unused", "unused")
    wrapped = sts.assume_role_with_saml(RoleArn=ROLE_ARN, PrincipalArn=PROVIDER_ARN,
                                        SAMLAssertion=saml_response(injected="mallory@corp.example"))
    assert wrapped["Subject"] == "alice@corp.example"
    assert wrapped["AssumedRoleUser"]["Arn"] == session_arn
    # a deleted provider takes no more assertions
    iam.delete_saml_provider(SAMLProviderArn=arn)
    assert iam.list_saml_providers()["SAMLProviderList"] == []
    assert sts_code(server, saml_response()) == "InvalidIdentityToken"
