from __future__ import annotations

import base64
import json
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.loaders import create_loader
from botocore.parsers import create_parser

from berth.api.ecr import errors, model
from berth.api.ecr.model import SerializationError, ValidationError, validate_input
from berth.iam import sigv4

TARGET = "AmazonEC2ContainerRegistry_V20150921"


def invalid(operation: str, params: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_input(operation, params)
    return info.value


def malformed(operation: str, params: dict[str, Any]) -> SerializationError:
    with pytest.raises(SerializationError) as info:
        validate_input(operation, params)
    return info.value


# --- the operation table -----------------------------------------------------------------------


def test_operation_names_are_botocore_s() -> None:
    names = model.operation_names()
    assert {"CreateRepository", "PutImage", "GetAuthorizationToken", "BatchGetImage"} <= set(names)
    assert len(names) >= 55
    assert set(names) == set(botocore.session.get_session().get_service_model("ecr").operation_names)


def test_model_is_loaded_once() -> None:
    assert model.service_model() is model.service_model()


def test_target_to_operation() -> None:
    assert model.target_to_operation(f"{TARGET}.CreateRepository") == "CreateRepository"
    assert model.target_to_operation(f"{TARGET}.NoSuchThing") is None
    assert model.target_to_operation("AmazonEC2ContainerRegistry_V20150922.CreateRepository") is None
    assert model.target_to_operation("CreateRepository") is None
    assert model.target_to_operation("") is None
    assert model.target_to_operation(None) is None


def test_output_shape_members() -> None:
    assert model.output_shape_members("CreateRepository") == ("repository",)
    assert set(model.output_shape_members("GetAuthorizationToken")) == {"authorizationData"}


def test_unknown_operation_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        validate_input("NoSuchThing", {})


# --- valid input -------------------------------------------------------------------------------


def test_valid_create_repository() -> None:
    validate_input("CreateRepository", {"repositoryName": "team/app"})
    validate_input(
        "CreateRepository",
        {
            "registryId": "123456789012",
            "repositoryName": "team/app-1.x__y",
            "tags": [{"Key": "team", "Value": "core"}],
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest*"}],
            "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfiguration": {"encryptionType": "AES256"},
        },
    )


def test_null_members_are_absent() -> None:
    validate_input("CreateRepository", {"repositoryName": "app", "registryId": None, "tags": None})


def test_blob_and_longs() -> None:
    validate_input(
        "UploadLayerPart",
        {
            "repositoryName": "app",
            "uploadId": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "partFirstByte": 0,
            "partLastByte": 2**40,
            "layerPartBlob": base64.b64encode(b"layer bytes").decode(),
        },
    )


def test_every_operation_accepts_its_required_members_being_reported_not_a_crash() -> None:
    for name in model.operation_names():
        try:
            validate_input(name, {})
        except ValidationError as exc:
            assert all(p.constraint == "Member must not be null" for p in exc.problems), name


# --- constraint problems -----------------------------------------------------------------------


def test_missing_required() -> None:
    exc = invalid("CreateRepository", {})
    assert exc.code == "InvalidParameterException"
    assert exc.validation_message == (
        "1 validation error detected: Value null at 'repositoryName' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert (
        exc.message
        == str(exc)
        == ("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must not be null'")
    )


def test_bad_enum() -> None:
    exc = invalid("CreateRepository", {"repositoryName": "app", "imageTagMutability": "X"})
    assert exc.validation_message == (
        "1 validation error detected: Value 'X' at 'imageTagMutability' failed to satisfy constraint: "
        "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]"
    )


def test_name_too_long() -> None:
    exc = invalid("CreateRepository", {"repositoryName": "a" * 257})
    assert [p.constraint for p in exc.problems] == ["Member must have length less than or equal to 256"]
    assert exc.problems[0].path == "repositoryName"


def test_name_too_short_and_bad_pattern() -> None:
    exc = invalid("CreateRepository", {"repositoryName": "A"})
    pattern = model.operation_model("CreateRepository").input_shape.members["repositoryName"].metadata["pattern"]
    assert [p.constraint for p in exc.problems] == [
        f"Member must satisfy regular expression pattern: {pattern}",
        "Member must have length greater than or equal to 2",
    ]
    assert exc.validation_message.startswith("2 validation errors detected: Value 'A' at 'repositoryName'")
    assert "; Value 'A' at 'repositoryName' failed to satisfy constraint: Member must have length" in (
        exc.validation_message
    )


@pytest.mark.parametrize("name", ["Team/app", "app/", "/app", "a..b", "a_-b", "app:tag"])
def test_bad_repository_names(name: str) -> None:
    exc = invalid("CreateRepository", {"repositoryName": name})
    assert exc.problems[0].constraint.startswith("Member must satisfy regular expression pattern")


def test_list_too_long_matches_what_ecr_says() -> None:
    ids = [{"imageTag": f"t{i}"} for i in range(101)]
    exc = invalid("BatchGetImage", {"repositoryName": "app", "imageIds": ids})
    # Text of the real service's answer, as users have reported it.
    assert exc.message == (
        "Invalid parameter at 'imageIds' failed to satisfy constraint: "
        "'Member must have length less than or equal to 100'"
    )
    exc = invalid("BatchDeleteImage", {"repositoryName": "app", "imageIds": []})
    assert exc.message == (
        "Invalid parameter at 'imageIds' failed to satisfy constraint: "
        "'Member must have length greater than or equal to 1'"
    )


def test_nested_paths_are_one_based() -> None:
    exc = invalid(
        "BatchGetImage",
        {"repositoryName": "app", "imageIds": [{"imageTag": "ok"}, {"imageTag": "x" * 301}, None]},
    )
    assert [p.path for p in exc.problems] == ["imageIds.2.member.imageTag", "imageIds.3.member"]
    exc = invalid("CreateRepository", {"repositoryName": "app", "encryptionConfiguration": {}})
    assert exc.problems[0].path == "encryptionConfiguration.encryptionType"


def test_integer_range() -> None:
    for value, text in [(0, "greater than or equal to 1"), (1001, "less than or equal to 1000")]:
        exc = invalid("DescribeRepositories", {"maxResults": value})
        assert exc.validation_message == (
            f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy constraint: "
            f"Member must have value {text}"
        )


def test_java_regex_classes_are_ascii() -> None:
    ok = "arn:aws:iam::123456789012:role/deploy_bot"
    validate_input("RegisterPullTimeUpdateExclusion", {"principalArn": ok})
    invalid("RegisterPullTimeUpdateExclusion", {"principalArn": "arn:aws:iam::123456789012:role/dépl"})


def test_length_counts_utf16_units_like_java() -> None:
    validate_input(
        "CreateRepositoryCreationTemplate", {"prefix": "ROOT", "appliedFor": ["REPLICATION"], "description": "é" * 256}
    )
    exc = invalid(
        "CreateRepositoryCreationTemplate",
        {"prefix": "ROOT", "appliedFor": ["REPLICATION"], "description": "\U0001f433" * 129},
    )
    assert exc.problems[0].constraint == "Member must have length less than or equal to 256"


def test_huge_values_are_truncated_in_messages() -> None:
    exc = invalid("PutImage", {"repositoryName": "app", "imageManifest": "x" * (4 * 1024 * 1024 + 1)})
    assert len(exc.validation_message) < 2000


def test_operation_without_invalid_parameter_gets_validation_exception() -> None:
    exc = ValidationError([model.Problem("x", "null", "Member must not be null")], code="ValidationException")
    assert exc.message == exc.validation_message


def test_blob_too_long() -> None:
    params = {
        "repositoryName": "app",
        "uploadId": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "partFirstByte": 0,
        "partLastByte": 1,
        "layerPartBlob": base64.b64encode(b"\0" * (20 * 1024 * 1024 + 1)).decode(),
    }
    exc = invalid("UploadLayerPart", params)
    assert exc.problems[0].path == "layerPartBlob" and "20971520" in exc.problems[0].constraint


# --- shape problems ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, params, text",
    [
        ("CreateRepository", {"repositoryName": 123}, "Expected a string at 'repositoryName', found number"),
        ("CreateRepository", {"repositoryName": ["a"]}, "Expected a string at 'repositoryName', found list"),
        ("BatchGetImage", {"repositoryName": "app", "imageIds": "t"}, "Expected a list at 'imageIds'"),
        ("BatchGetImage", {"repositoryName": "app", "imageIds": ["t"]}, "Expected a structure at 'imageIds.1.member'"),
        ("DescribeRepositories", {"maxResults": "10"}, "Expected an integer at 'maxResults', found string"),
        ("DescribeRepositories", {"maxResults": True}, "found boolean"),
        ("DescribeRepositories", {"maxResults": 1.5}, "found number"),
        ("DescribeRepositories", {"maxResults": 2**31}, "out of range"),
        (
            "CreateRepository",
            {"repositoryName": "app", "imageScanningConfiguration": {"scanOnPush": "true"}},
            "Expected a boolean at 'imageScanningConfiguration.scanOnPush'",
        ),
        (
            "UploadLayerPart",
            {
                "repositoryName": "app",
                "uploadId": "u",
                "partFirstByte": 0,
                "partLastByte": 1,
                "layerPartBlob": "not base64!",
            },
            "not valid base64",
        ),
        ("CreateRepository", {"repositoryName": "app", "colour": "blue"}, 'Unknown parameter in input: "colour"'),
        (
            "CreateRepository",
            {"repositoryName": "app", "imageScanningConfiguration": {"scanOnPull": True}},
            'Unknown parameter in imageScanningConfiguration: "scanOnPull", must be one of: scanOnPush',
        ),
        ("DeleteSigningConfiguration", {"x": 1}, 'Unknown parameter in input: "x", none are accepted'),
    ],
)
def test_wrong_types_and_unknown_members(operation: str, params: dict[str, Any], text: str) -> None:
    exc = malformed(operation, params)
    assert exc.code == "SerializationException"
    assert text in exc.message


def test_decode_body() -> None:
    assert model.decode_body(b"") == {}
    assert model.decode_body(b'{"repositoryName": "app"}') == {"repositoryName": "app"}
    for bad in (b"{", b"[]", b"\xff", b'"x"'):
        with pytest.raises(SerializationError):
            model.decode_body(bad)


# --- the exception table -----------------------------------------------------------------------


def _model_exceptions() -> dict[str, int]:
    found = {}
    shapes = create_loader().load_service_model("ecr", "service-2")["shapes"]
    for name, shape in shapes.items():
        if shape.get("exception"):
            status = shape.get("error", {}).get("httpStatusCode")
            found[name] = status or (500 if shape.get("fault") else 400)
    return found


def test_table_covers_every_model_exception() -> None:
    assert errors.MODEL_EXCEPTIONS == _model_exceptions()


def test_statuses_agree_with_botocore_retry_rules() -> None:
    retry = create_loader().load_data("_retry")
    for definition in retry["definitions"].values():
        response = definition.get("applies_when", {}).get("response", {})
        code = response.get("service_error_code")
        if code in errors.STATUS and "http_status_code" in response:
            assert errors.STATUS[code] == response["http_status_code"], code


def _parse(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    shape = model.operation_model("CreateRepository").output_shape
    parser = create_parser("json")
    return parser.parse({"status_code": status, "headers": HeadersDict(headers), "body": body}, shape)


@pytest.mark.parametrize("name", sorted(errors.STATUS))
def test_botocore_parses_every_error(name: str) -> None:
    status, headers, body = errors.error_body(name, "it went wrong")
    assert status == {"ServerException": 500, "ServiceUnavailable": 503}.get(name, 400)
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    parsed = _parse(status, headers, body)
    assert parsed["Error"]["Code"] == name
    assert parsed["Error"]["Message"] == "it went wrong"
    assert parsed["ResponseMetadata"]["RequestId"] == headers["x-amzn-RequestId"]
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status


def test_request_ids_are_fresh_unless_given() -> None:
    first = errors.error_body("RepositoryNotFoundException", "m")[1]["x-amzn-RequestId"]
    second = errors.error_body("RepositoryNotFoundException", "m")[1]["x-amzn-RequestId"]
    assert first != second
    assert errors.error_body("ServerException", "m", request_id="abc")[1]["x-amzn-RequestId"] == "abc"


def test_modelled_extra_members() -> None:
    status, _, body = errors.error_body(
        "InvalidLayerPartException", "bad part", repositoryName="app", uploadId="u", lastValidByteReceived=41
    )
    assert json.loads(body) == {
        "__type": "InvalidLayerPartException",
        "message": "bad part",
        "repositoryName": "app",
        "uploadId": "u",
        "lastValidByteReceived": 41,
    }
    with pytest.raises(ValueError):
        errors.error_body("RepositoryNotFoundException", "m", colour="blue")
    with pytest.raises(ValueError):
        errors.error_body("NoSuchException", "m")


def test_from_exception() -> None:
    cases = [
        (sigv4.MissingAuthentication("Missing Authentication Token"), "MissingAuthenticationTokenException"),
        (sigv4.IncompleteSignature("x"), "IncompleteSignatureException"),
        (sigv4.SignatureDoesNotMatch("x"), "InvalidSignatureException"),
        (sigv4.RequestExpired("Signature expired: ..."), "InvalidSignatureException"),
        (SerializationError("x"), "SerializationException"),
    ]
    for exc, code in cases:
        status, headers, body = errors.from_exception(exc)
        assert (status, _parse(status, headers, body)["Error"]["Code"]) == (400, code)
    try:
        validate_input("CreateRepository", {})
    except ValidationError as exc:
        assert json.loads(errors.from_exception(exc)[2])["__type"] == "InvalidParameterException"
    with pytest.raises(TypeError):
        errors.from_exception(RuntimeError())


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def test_a_real_client_raises_the_modelled_exception() -> None:
    client = botocore.session.get_session().create_client(
        "ecr",
        region_name="us-east-1",
        endpoint_url="http://localhost:5000",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 0}),
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        status, headers, body = errors.error_body(
            "RepositoryNotFoundException",
            "The repository with name 'app' does not exist in the registry with id '123456789012'",
        )
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.register("before-send", answer)
    with pytest.raises(client.exceptions.RepositoryNotFoundException) as info:
        client.describe_repositories(repositoryNames=["app"])
    assert "does not exist" in info.value.response["Error"]["Message"]
