"""berth.iam.saml on its own, for what the end-to-end test (tests/integration/test_identity_saml.py, whose
IdP key and signed responses this reuses) does not reach: a provider's rotated certificates, a comment
inside a signed NameID, metadata that is not an IdP's, a DTD."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from signxml import XMLSigner

from berth.iam import saml
from tests.integration import test_identity_saml as idp


def test_any_certificate_of_the_metadata_verifies() -> None:
    old, new = saml.parse_metadata(idp.metadata(idp.OTHER_CERT)), saml.parse_metadata(idp.metadata())
    rotated = saml.Metadata(new.entity_id, old.certificates + new.certificates, None)
    assert saml.verify_response(idp.saml_response(), rotated, datetime.now(UTC)).subject == "alice@corp.example"
    with pytest.raises(saml.SamlError, match="does not verify"):
        saml.verify_response(idp.saml_response(), old, datetime.now(UTC))


def test_a_comment_never_truncates_a_signed_name_id() -> None:
    now = datetime.now(UTC)
    assertion = idp._assertion("x", [f"{idp.ROLE_ARN},{idp.PROVIDER_ARN}"], idp.AWS_AUDIENCE, "s",
                               now + timedelta(minutes=5))
    name_id = assertion.find(f"{{{idp.SAML_NS}}}Subject/{{{idp.SAML_NS}}}NameID")
    name_id.text = "admin@corp.example"
    comment = etree.Comment("")
    name_id.append(comment)
    comment.tail = ".attacker.example"
    signed = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
        assertion, key=idp.IDP_KEY, cert=idp.IDP_CERT.decode(), reference_uri="#" + assertion.get("ID"))
    response = etree.fromstring(f'<samlp:Response xmlns:samlp="{idp.PROTOCOL_NS}" ID="_r" Version="2.0"/>')
    response.append(signed)
    got = saml.verify_response(base64.b64encode(etree.tostring(response)).decode(),
                               saml.parse_metadata(idp.metadata()), now)
    assert got.subject == "admin@corp.example.attacker.example"


def test_metadata_and_responses_that_are_refused() -> None:
    with pytest.raises(saml.SamlError, match="IDPSSODescriptor"):
        saml.parse_metadata(f'<md:EntityDescriptor xmlns:md="{saml.MD}" entityID="x"/>')
    with pytest.raises(saml.SamlError, match="DTD"):
        saml.parse_metadata('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>')
    with pytest.raises(saml.SamlError, match="not base64"):
        saml.verify_response("%%%", saml.parse_metadata(idp.metadata()), datetime.now(UTC))
