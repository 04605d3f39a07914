"""SAML 2.0 federation: an IdP's metadata (its entity id and signing certificates) and the checks of a
SAML response that AssumeRoleWithSAML takes as its credential.

The XML signature is verified by signxml (XML-DSig, exclusive c14n; SHA-1 refused, signxml's default)
against the certificates of the provider's metadata, and everything read afterwards comes from the
element the signature covers (the signed Response or Assertion signxml hands back), never from the
document as received, so a wrapped or injected assertion is never read; text is read whole, so a
comment never truncates a NameID. Parsing forbids entities, DTDs and network access.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree
from signxml import XMLVerifier
from signxml.exceptions import InvalidInput as SignxmlInvalidInput
from signxml.exceptions import InvalidSignature

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": MD, "saml": ASSERTION, "samlp": PROTOCOL, "ds": DS}
# The audiences and recipient AWS accepts for a SAML response meant for STS (SAML:aud is the recipient).
AUDIENCES = ("https://signin.aws.amazon.com/saml", "urn:amazon:webservices")
ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_NAME_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
DURATION_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_SKEW = timedelta(minutes=5)  # clock skew allowed on NotBefore, as IdPs and SPs commonly do
_SUB_TYPES = {"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent": "persistent",
              "urn:oasis:names:tc:SAML:2.0:nameid-format:transient": "transient"}


class SamlError(ValueError):
    """The metadata or the response is not acceptable: the message says why."""


class SamlExpired(SamlError):
    """The response is past its NotOnOrAfter."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True)


def _parse(data: bytes) -> etree._Element:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SamlError("a DTD is not allowed")
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise SamlError(f"not well-formed XML: {e}") from None


def _pem(b64: str) -> str:
    body = "".join(b64.split())
    try:
        base64.b64decode(body, validate=True)
    except binascii.Error:
        raise SamlError("a signing certificate of the metadata is not base64") from None
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SamlError(f"{what} is not a date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Metadata:
    entity_id: str
    certificates: tuple[str, ...]  # PEM, the IdP's signing certificates
    valid_until: datetime | None


def parse_metadata(document: str) -> Metadata:
    """An IdP's SAML metadata (an EntityDescriptor with an IDPSSODescriptor and its signing keys)."""
    root = _parse(document.encode("utf-8"))
    if root.tag == f"{{{MD}}}EntitiesDescriptor":
        found = root.find("md:EntityDescriptor", NS)
        if found is None:
            raise SamlError("the metadata names no EntityDescriptor")
        root = found
    if root.tag != f"{{{MD}}}EntityDescriptor" or not root.get("entityID"):
        raise SamlError("the metadata is not a SAML 2.0 EntityDescriptor with an entityID")
    idp = root.find("md:IDPSSODescriptor", NS)
    if idp is None:
        raise SamlError("the metadata has no IDPSSODescriptor")
    certs = []
    for key in idp.findall("md:KeyDescriptor", NS):
        if key.get("use") not in (None, "signing"):
            continue
        for cert in key.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS):
            if cert.text and cert.text.strip():
                certs.append(_pem(cert.text))
    if not certs:
        raise SamlError("the metadata has no signing certificate (KeyDescriptor use=\"signing\")")
    valid_until = _time(root.get("validUntil") or idp.get("validUntil"), "validUntil")
    return Metadata(root.get("entityID", ""), tuple(certs), valid_until)


@dataclass(frozen=True, slots=True)
class SamlAssertion:
    issuer: str
    subject: str
    subject_type: str
    recipient: str  # SAML:aud
    audiences: tuple[str, ...]
    roles: tuple[tuple[str, str], ...]  # (role ARN, provider ARN) pairs of the Role attribute
    session_name: str | None
    session_duration: int | None
    not_on_or_after: datetime


def name_qualifier(issuer: str, account: str, provider_name: str) -> str:
    """SAML:namequalifier, as AWS computes it: base64(SHA-1(issuer + account + "/" + provider name))."""
    digest = hashlib.sha1((issuer + account + "/" + provider_name).encode("utf-8")).digest()  # noqa: S324
    return base64.b64encode(digest).decode("ascii")


def _text(element: etree._Element | None) -> str:
    """All of an element's text, comments' neighbours joined (a comment never truncates a NameID)."""
    return "" if element is None else "".join(element.itertext()).strip()


def _signed(raw: bytes, certificates: tuple[str, ...]) -> etree._Element:
    last: Exception | None = None
    for cert in certificates:  # each attempt on the bytes as received: a failed one leaves nothing behind
        try:
            result = XMLVerifier().verify(raw, x509_cert=cert)
        except (InvalidSignature, SignxmlInvalidInput) as e:
            last = e
            continue
        one = result[0] if isinstance(result, list) else result
        signed = one.signed_xml
        if signed is None:
            break
        return signed  # type: ignore[no-any-return]
    raise SamlError(f"the signature of the SAML response does not verify with the provider's certificates"
                    f"{f' ({last})' if last else ''}")


def verify_response(encoded: str, metadata: Metadata, now: datetime) -> SamlAssertion:
    """The assertion of a base64 SAML response signed by the provider, checked for time, audience,
    recipient and issuer; SamlError (SamlExpired when it has expired) otherwise."""
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlError("the SAML assertion is not base64") from None
    root = _parse(raw)
    if root.tag != f"{{{PROTOCOL}}}Response":
        raise SamlError("the SAML assertion is not a SAML 2.0 Response")
    status = root.find("samlp:Status/samlp:StatusCode", NS)
    if status is not None and status.get("Value") != SUCCESS:
        raise SamlError(f"the SAML response's status is {status.get('Value')}")
    signed = _signed(raw, metadata.certificates)
    if signed.tag == f"{{{ASSERTION}}}Assertion":
        assertion = signed
    elif signed.tag == f"{{{PROTOCOL}}}Response":
        found = signed.findall("saml:Assertion", NS)
        if len(found) != 1:
            raise SamlError("the signed SAML response must hold exactly one assertion")
        assertion = found[0]
    else:
        raise SamlError("the signature covers neither the response nor its assertion")
    issuer = _text(assertion.find("saml:Issuer", NS))
    if issuer != metadata.entity_id:
        raise SamlError(f"the assertion's issuer {issuer!r} is not the provider's entity id")
    conditions = assertion.find("saml:Conditions", NS)
    not_before = _time(None if conditions is None else conditions.get("NotBefore"), "NotBefore")
    ends = _time(None if conditions is None else conditions.get("NotOnOrAfter"), "NotOnOrAfter")
    if not_before is not None and now + _SKEW < not_before:
        raise SamlError("the SAML assertion is not yet valid")
    audiences = tuple(_text(a) for a in assertion.findall("saml:Conditions/saml:AudienceRestriction/saml:Audience",
                                                           NS))
    if not any(a in AUDIENCES for a in audiences):
        raise SamlError(f"the assertion's audience must be one of {', '.join(AUDIENCES)}")
    subject = assertion.find("saml:Subject", NS)
    name_id = None if subject is None else subject.find("saml:NameID", NS)
    if name_id is None or not _text(name_id):
        raise SamlError("the assertion has no Subject NameID")
    data = None if subject is None else subject.find(
        "saml:SubjectConfirmation[@Method='urn:oasis:names:tc:SAML:2.0:cm:bearer']/saml:SubjectConfirmationData", NS)
    if data is None:
        raise SamlError("the assertion has no bearer SubjectConfirmationData")
    recipient = data.get("Recipient", "")
    if recipient not in AUDIENCES:
        raise SamlError(f"the subject confirmation's recipient must be one of {', '.join(AUDIENCES)}")
    confirm_ends = _time(data.get("NotOnOrAfter"), "NotOnOrAfter")
    deadline = min(t for t in (ends, confirm_ends) if t is not None) if ends or confirm_ends else None
    if deadline is None:
        raise SamlError("the assertion has no NotOnOrAfter")
    if now >= deadline:
        raise SamlExpired("the SAML assertion has expired")
    if metadata.valid_until is not None and now >= metadata.valid_until:
        raise SamlError("the provider's metadata is past its validUntil")
    attributes: dict[str, list[str]] = {}
    for attr in assertion.findall("saml:AttributeStatement/saml:Attribute", NS):
        attributes.setdefault(attr.get("Name", ""), []).extend(
            _text(v) for v in attr.findall("saml:AttributeValue", NS))
    roles = []
    for value in attributes.get(ROLE_ATTRIBUTE, []):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 2:
            role, provider = (parts if ":role/" in parts[0] else parts[::-1])
            roles.append((role, provider))
    duration = attributes.get(DURATION_ATTRIBUTE, [None])[0]
    try:
        seconds = int(duration) if duration else None
    except ValueError:
        raise SamlError(f"the SessionDuration attribute is not a number: {duration!r}") from None
    fmt = name_id.get("Format", "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    session = attributes.get(SESSION_NAME_ATTRIBUTE, [None])[0]
    return SamlAssertion(issuer, _text(name_id), _SUB_TYPES.get(fmt, fmt), recipient, audiences,
                         tuple(roles), session, seconds, deadline)
