"""One total error table per wire face: every domain error defined anywhere in berth has exactly one
OCI (status, code) and one AWS exception, and every AWS exception named is one the ECR model (or the
common AWS set) declares. Enumerated from the code itself, so a new domain error without an entry fails."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import berth
from berth.api.ecr import errors as ecr
from berth.api.ecr import ops_lifecycle, ops_scanning
from berth.api.oci import errors as oci
from berth.errors import DomainError
from berth.iam.errors import IamError
from berth.lifecycle.service import LifecycleError
from berth.registry.errors import CODES, RegistryError
from berth.scanning.errors import ScanError

# OCI codes a client may meet (distribution-spec's table, plus distribution's UNKNOWN and UNAVAILABLE).
OCI_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
             "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
             "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
             "PAGINATION_NUMBER_INVALID", "UNKNOWN", "UNAVAILABLE", "TAG_INVALID"}


def _every_module() -> None:
    for info in pkgutil.walk_packages(berth.__path__, "berth."):
        if ".migrations" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def registry_codes() -> set[str]:
    _every_module()
    return {RegistryError.code} | set(CODES) | {c.code for c in _subclasses(RegistryError)}


def iam_codes() -> set[str]:
    _every_module()
    return {IamError.code} | {c.code for c in _subclasses(IamError)}


def test_every_domain_error_has_one_oci_entry() -> None:
    codes = registry_codes()
    assert len(codes) >= 34  # 33 defined today, and the base class's UNKNOWN
    assert sorted(codes - set(oci.DOMAIN)) == []
    assert sorted(set(oci.DOMAIN) - codes) == []  # and no entry for a code that no longer exists


def test_every_domain_error_has_one_aws_exception() -> None:
    codes = registry_codes()
    assert sorted(codes - set(ecr.REGISTRY_ERRORS)) == []
    assert sorted(set(ecr.REGISTRY_ERRORS) - codes) == []


def test_every_identity_error_has_one_aws_exception() -> None:
    codes = iam_codes()
    assert sorted(codes - set(ecr.IAM_ERRORS)) == []
    assert sorted(set(ecr.IAM_ERRORS) - codes) == []


def test_every_lifecycle_and_scanning_refusal_has_one_aws_exception() -> None:
    _every_module()
    # a domain error is a registry, lifecycle or scanning one: each family has its face's table
    families = {RegistryError: ecr.REGISTRY_ERRORS, LifecycleError: ops_lifecycle.ERRORS,
                ScanError: ops_scanning.ERRORS}
    assert _subclasses(DomainError) == set(families) | {c for f in families for c in _subclasses(f)}
    for family, table in list(families.items())[1:]:
        assert {c.code for c in _subclasses(family)} == set(table), family.__name__
        assert set(table.values()) <= set(ecr.STATUS), family.__name__


def test_aws_exceptions_are_declared() -> None:
    for name in [*ecr.REGISTRY_ERRORS.values(), *ecr.IAM_ERRORS.values()]:
        assert name in ecr.STATUS, name
        status, _, _ = ecr.error_body(name, "m")
        assert status == {"ServerException": 500, "ServiceUnavailable": 503}.get(name, 400), name


def test_oci_entries_use_oci_codes() -> None:
    for code, (status, wire) in oci.TABLE.items():
        assert wire in OCI_CODES, code
        assert 400 <= status < 600, code
    assert set(oci.DOMAIN).isdisjoint(oci.EDGE)


def test_no_default_for_an_unknown_code() -> None:
    with pytest.raises(KeyError):
        oci.error_body("NO_SUCH_CODE", "m")
    with pytest.raises(ValueError):
        ecr.error_body("NoSuchException", "m")
    with pytest.raises(ValueError):
        oci.EdgeError("NAME_UNKNOWN", "a domain code is not an edge refusal")


def test_a_code_cannot_be_defined_twice() -> None:
    from berth.registry.errors import define

    with pytest.raises(ValueError):
        define("BLOB_UNKNOWN")


def test_faults_carry_the_request_id() -> None:
    status, body = oci.fault_body("rid-1")
    assert status == 500 and b'"UNKNOWN"' in body and b"rid-1" in body
    status, headers, body = ecr.fault("rid-2")
    assert status == 500 and headers["x-amzn-RequestId"] == "rid-2" and b"ServerException" in body
