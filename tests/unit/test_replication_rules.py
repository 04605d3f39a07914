"""The replication configuration's rules (berth/replication/rules.py): pure, no server."""

from __future__ import annotations

import pytest

from berth.replication.rules import Configuration, ConfigurationInvalid, Destination, check, parse

A, B = "123456789012", "111122223333"


def doc(*rules: dict) -> dict:
    return {"rules": list(rules)}


def test_destinations_follow_prefix_filters_once_each_in_rule_order() -> None:
    config = parse(doc(
        {"destinations": [{"region": "us-west-2", "registryId": A}],
         "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [{"region": "eu-west-1", "registryId": B}, {"region": "us-west-2", "registryId": A}]},
    ))
    west, eu = Destination("us-west-2", A), Destination("eu-west-1", B)
    assert config.destinations_for("prod/app") == [west, eu]
    assert config.destinations_for("dev/app") == [eu, west]  # the second rule has no filter: every repository
    assert config.all_destinations() == [west, eu]
    assert config.deletes_to("prod/app") == []


def test_a_prefix_is_a_prefix_not_a_path_segment() -> None:
    config = parse(doc({"destinations": [{"region": "us-west-2", "registryId": A}],
                        "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}]}))
    assert config.destinations_for("production/x") == [Destination("us-west-2", A)]
    assert config.destinations_for("pro") == []


def test_delete_replication_is_per_rule() -> None:
    config = parse(doc(
        {"destinations": [{"region": "us-west-2", "registryId": A}], "deleteReplication": {"enabled": True},
         "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [{"region": "eu-west-1", "registryId": A}], "deleteReplication": {"enabled": False}},
    ))
    assert config.deletes_to("mirror/a") == [Destination("us-west-2", A)]
    assert config.deletes_to("other") == []


def test_the_document_round_trips_through_storage() -> None:
    d = doc({"destinations": [{"region": "us-west-2", "registryId": A}],
             "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}],
             "deleteReplication": {"enabled": True}},
            {"destinations": []})
    config = parse(d)
    assert config.to_document() == d
    assert Configuration.from_json(config.to_json()) == config
    assert Configuration.from_json(None).to_document() == {"rules": []}


def test_check_refuses_the_source_itself_and_more_than_25_unique_destinations() -> None:
    with pytest.raises(ConfigurationInvalid, match="cannot be the same as the source registry"):
        check(parse(doc({"destinations": [{"region": "us-east-1", "registryId": A}]})), A, "us-east-1")
    check(parse(doc({"destinations": [{"region": "us-east-1", "registryId": B}]})), A, "us-east-1")  # another account
    same_25 = [{"destinations": [{"region": "us-west-2", "registryId": f"{i:012d}"} for i in range(25)]}] * 3
    check(parse(doc(*same_25)), A, "us-east-1")  # 75 destinations, 25 unique
    many = [{"destinations": [{"region": "us-west-2", "registryId": f"{i:012d}"}]} for i in range(26)]
    with pytest.raises(ConfigurationInvalid, match="at most 25 unique destinations"):
        check(parse(doc(*many)), A, "us-east-1")


def test_tag_filters_an_extension_that_bounds_pushes_and_tags() -> None:
    west, eu = Destination("us-west-2", A), Destination("eu-west-1", A)
    d = doc({"destinations": [{"region": "us-west-2", "registryId": A}],
             "tagFilters": [{"filter": "v*", "filterType": "WILDCARD"},
                            {"filter": "release-*", "filterType": "WILDCARD"}]},
            {"destinations": [{"region": "eu-west-1", "registryId": A}]})
    config = parse(d)
    assert config.to_document() == d
    assert config.destinations_for("app", "v1.2") == [west, eu]
    assert config.destinations_for("app", "release-1") == [west, eu]
    assert config.destinations_for("app", "latest") == [eu]
    assert config.destinations_for("app", None) == [eu]  # an untagged push
    assert config.destinations_for("app", None, referrer=True) == [west, eu]  # a referrer follows its subject
    assert config.tags_for("app", west) == ("v*", "release-*")
    assert config.tags_for("app", eu) is None
    for bad in ([], [{"filter": "v*"}], [{"filter": "a b", "filterType": "WILDCARD"}],
                [{"filter": "v*", "filterType": "PREFIX_MATCH"}], [{"filter": "v?", "filterType": "WILDCARD"}], "v*"):
        with pytest.raises(ConfigurationInvalid):
            parse(doc({"destinations": [], "tagFilters": bad}))
