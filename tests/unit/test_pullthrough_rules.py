"""The pure parts of the pull-through cache and creation templates: how an upstream URL is read, which
rule and which template apply to a name."""

from __future__ import annotations

import pytest

from berth.db.pullthrough import RuleRow
from berth.registry.model import Encryption, Mutability
from berth.registry.templates import Template, best_template
from berth.replication.pullthrough_client import BadUpstreamUrl, endpoint
from berth.replication.pullthrough_rules import Rule, best_rule


@pytest.mark.parametrize("url,host,schemes", [
    ("registry.example.com", "registry.example.com", ("https",)),
    ("registry.example.com:5000/", "registry.example.com:5000", ("https",)),
    ("https://registry.example.com", "registry.example.com", ("https",)),
    ("127.0.0.1:5001", "127.0.0.1:5001", ("https", "http")),
    ("localhost:5001", "localhost:5001", ("https", "http")),
    ("[::1]:5001", "[::1]:5001", ("https", "http")),
    ("http://127.0.0.1:5001", "127.0.0.1:5001", ("http",)),
    ("http://registry.lan:5000", "registry.lan:5000", ("http",)),  # listed insecure below
    ("registry.lan:5000", "registry.lan:5000", ("https", "http")),
])
def test_upstream_urls(url: str, host: str, schemes: tuple[str, ...]) -> None:
    ep = endpoint(url, insecure={"registry.lan:5000"})
    assert (ep.host, ep.schemes) == (host, schemes)


@pytest.mark.parametrize("url", ["http://registry.example.com", "ftp://x", "", "a b", "host:99999",
                                 "https://host/path/more", "-bad.example.com"])
def test_bad_upstream_urls(url: str) -> None:
    with pytest.raises(BadUpstreamUrl):
        endpoint(url)


def _rule(prefix: str, upstream_prefix: str = "ROOT") -> Rule:
    return Rule.from_row("123456789012", "us-east-1", RuleRow(prefix, "h", None, upstream_prefix, None, None, 0, 0))


def test_the_longest_rule_prefix_wins() -> None:
    rules = [_rule("ROOT"), _rule("hub"), _rule("hub/library", "mirror")]
    assert best_rule(rules, "hub/library/nginx") == (rules[2], "mirror/nginx")
    assert best_rule(rules, "hub/other/app") == (rules[1], "other/app")
    assert best_rule(rules, "elsewhere/app") == (rules[0], "elsewhere/app")
    assert best_rule(rules[1:], "hubx/app") is None
    assert best_rule(rules[1:], "hub") is None  # the prefix alone names no upstream repository


def _template(prefix: str, *applied: str) -> Template:
    return Template(prefix, "", applied, Mutability(), Encryption(), (), None, None, None, 0, 0)


def test_the_longest_template_prefix_for_the_path_wins() -> None:
    ts = [_template("ROOT", "CREATE_ON_PUSH"), _template("prod", "CREATE_ON_PUSH", "REPLICATION"),
          _template("prod/team", "REPLICATION")]
    assert best_template(ts, "prod/team/app", "REPLICATION") is ts[2]
    assert best_template(ts, "prod/team/app", "CREATE_ON_PUSH") is ts[1]
    assert best_template(ts, "prodx/app", "CREATE_ON_PUSH") is ts[0]
    assert best_template(ts, "prod", "CREATE_ON_PUSH") is ts[0]  # `prod` covers prod/…, not prod itself
    assert best_template(ts, "other/app", "PULL_THROUGH_CACHE") is None
