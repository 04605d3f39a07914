"""Pull-through cache rules (ECR's CreatePullThroughCacheRule family): any OCI registry as an upstream, with
or without credentials from a Secrets Manager secret named `ecr-pullthroughcache/...`.

A rule with prefix `p` covers the repositories `p/<upstream repository>`; the upstream repository is
`<upstreamRepositoryPrefix>/<rest>` (or `<rest>` when that prefix is ROOT). A ROOT rule covers every name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from berth.db import pullthrough as q
from berth.db.pullthrough import RuleRow
from berth.db.store import Backend
from berth.registry.errors import ParameterInvalid
from berth.replication.pullthrough_client import BadUpstreamUrl, UpstreamClient, UpstreamError, endpoint
from berth.replication.upstream_role import registry_credentials, upstream_region, valid_role_arn
from berth.secrets.service import Secrets, SecretsError, parse_secret_arn

ROOT = "ROOT"
MAX_RULES = 50  # ECR's quota of pull-through cache rules per registry
# ECR's named upstreams and the registry hosts they stand for (UnsupportedUpstreamRegistryException otherwise)
KNOWN_UPSTREAMS: dict[str, Callable[[str], bool]] = {
    "ecr": lambda h: h.endswith(".amazonaws.com") and ".dkr.ecr." in h,
    "ecr-public": lambda h: h == "public.ecr.aws",
    "quay": lambda h: h == "quay.io",
    "k8s": lambda h: h == "registry.k8s.io",
    "docker-hub": lambda h: h in ("registry-1.docker.io", "docker.io"),
    "github-container-registry": lambda h: h == "ghcr.io",
    "azure-container-registry": lambda h: h.endswith(".azurecr.io"),
    "gitlab-container-registry": lambda h: h == "registry.gitlab.com",
    "chainguard": lambda h: h == "cgr.dev",
}


class RuleError(Exception):
    """`kind` names the ECR exception (PullThroughCacheRuleNotFoundException, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Rule:
    account: str
    region: str
    prefix: str
    upstream_url: str
    upstream_registry: str | None
    upstream_prefix: str
    credential_arn: str | None
    custom_role_arn: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, account: str, region: str, r: RuleRow) -> Rule:
        return cls(account, region, r.prefix, r.upstream_url, r.upstream_registry, r.upstream_prefix,
                   r.credential_arn, r.custom_role_arn, r.created_at, r.updated_at)

    def upstream_repository(self, name: str) -> str | None:
        """The upstream repository the local `name` stands for, or None when the rule does not cover it."""
        if self.prefix == ROOT:
            rest = name
        elif name.startswith(self.prefix + "/") and len(name) > len(self.prefix) + 1:
            rest = name[len(self.prefix) + 1:]
        else:
            return None
        return rest if self.upstream_prefix == ROOT else f"{self.upstream_prefix}/{rest}"


def normalize_prefix(prefix: str) -> str:
    if prefix == ROOT:
        return prefix
    return prefix[:-1] if prefix.endswith("/") else prefix


def best_rule(rules: Sequence[Rule], name: str) -> tuple[Rule, str] | None:
    """The rule with the longest prefix that covers `name` (ROOT last), and the upstream repository."""
    found = [(r, up) for r in rules if (up := r.upstream_repository(name)) is not None]
    found.sort(key=lambda x: -1 if x[0].prefix == ROOT else len(x[0].prefix), reverse=True)
    return found[0] if found else None


class PullThroughRules:
    def __init__(self, db: Backend, secrets: Secrets, insecure: Collection[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.secrets = secrets
        self.insecure = frozenset(insecure)
        self.clock = clock

    def _not_found(self, account: str, prefix: str) -> RuleError:
        return RuleError("PullThroughCacheRuleNotFoundException",
                         f"The pull through cache rule with the prefix '{prefix}' does not exist in the registry "
                         f"with id '{account}'")

    async def _check_secret(self, account: str, region: str, arn: str | None) -> None:
        if arn is None:
            return
        parsed = parse_secret_arn(arn)
        if parsed is None or (parsed[0], parsed[1]) != (region, account):
            raise RuleError("SecretNotFoundException", f"The secret '{arn}' is not in this registry's account and "
                                                       "region")
        try:
            await self.secrets.get_value(account, region, arn)
        except SecretsError as e:
            if e.kind == "DecryptionFailure":
                raise RuleError("UnableToDecryptSecretValueException", e.message) from None
            if e.kind == "ResourceNotFoundException":
                raise RuleError("SecretNotFoundException", f"The secret '{arn}' does not exist") from None
            raise RuleError("UnableToAccessSecretException", e.message) from None

    @staticmethod
    def _check_role(role: str | None) -> None:
        # Its shape only, as ECR checks a rule when it is written; whether the role can be assumed (it needs
        # the access key in credentialArn's secret) is for ValidatePullThroughCacheRule and the pulls to say.
        if role is not None and not valid_role_arn(role):
            raise ParameterInvalid(f"Invalid parameter at 'customRoleArn' failed to satisfy constraint: '{role}' is "
                                   "not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")

    async def create(self, account: str, region: str, p: dict[str, Any]) -> Rule:
        prefix = normalize_prefix(p["ecrRepositoryPrefix"])
        url = p["upstreamRegistryUrl"]
        try:
            ep = endpoint(url, self.insecure)
        except BadUpstreamUrl as e:
            raise ParameterInvalid(f"Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: "
                                   f"'{e}'") from None
        kind = p.get("upstreamRegistry")
        if kind is not None and not KNOWN_UPSTREAMS[kind](ep.host.split(":")[0]):
            raise RuleError("UnsupportedUpstreamRegistryException",
                            f"The upstream registry URL '{url}' is not the registry '{kind}'; leave upstreamRegistry "
                            "out for any other OCI registry")
        await self._check_secret(account, region, p.get("credentialArn"))
        self._check_role(p.get("customRoleArn"))
        upstream_prefix = normalize_prefix(p.get("upstreamRepositoryPrefix") or ROOT)
        now = self.clock()
        row = RuleRow(prefix, url.strip().rstrip("/"), kind, upstream_prefix, p.get("credentialArn"),
                      p.get("customRoleArn"), now, now)
        outcome = await self.db.write(q.create_rule, account, region, row, MAX_RULES)
        if outcome == "exists":
            raise RuleError("PullThroughCacheRuleAlreadyExistsException",
                            f"A pull through cache rule with the prefix '{prefix}' already exists in the registry "
                            f"with id '{account}'")
        if outcome == "limit":
            raise RuleError("LimitExceededException", f"The maximum number of pull through cache rules "
                                                      f"({MAX_RULES}) has been reached for this registry")
        return Rule.from_row(account, region, row)

    async def update(self, account: str, region: str, p: dict[str, Any]) -> Rule:
        prefix = normalize_prefix(p["ecrRepositoryPrefix"])
        current = await self.describe(account, region, [prefix])
        cred = p.get("credentialArn", current[0].credential_arn)
        await self._check_secret(account, region, cred)
        role = p.get("customRoleArn", current[0].custom_role_arn)
        self._check_role(role)
        row = await self.db.write(q.update_rule, account, region, prefix, cred, role, self.clock())
        if row is None:
            raise self._not_found(account, prefix)
        return Rule.from_row(account, region, row)

    async def delete(self, account: str, region: str, prefix: str) -> Rule:
        prefix = normalize_prefix(prefix)
        row = await self.db.write(q.delete_rule, account, region, prefix)
        if row is None:
            raise self._not_found(account, prefix)
        return Rule.from_row(account, region, row)

    async def describe(self, account: str, region: str, prefixes: Sequence[str] | None = None) -> list[Rule]:
        wanted = None if prefixes is None else list(dict.fromkeys(normalize_prefix(x) for x in prefixes))
        rules = [Rule.from_row(account, region, r) for r in await self.db.read(q.list_rules, account, region, wanted)]
        if wanted is not None:
            have = {r.prefix for r in rules}
            for x in wanted:
                if x not in have:
                    raise self._not_found(account, x)
        return rules

    async def credentials(self, rule: Rule) -> tuple[str, str] | None:
        """(username, accessToken) from the rule's secret, as ECR reads it; UpstreamError when unreadable."""
        if rule.credential_arn is None:
            return None
        try:
            value = await self.secrets.get_value(rule.account, rule.region, rule.credential_arn)
        except SecretsError as e:
            raise UpstreamError("UpstreamAccessDenied", f"the rule's secret cannot be read: {e.message}",
                                credentials=True) from None
        try:
            doc = json.loads(value.string or "")
            return str(doc["username"]), str(doc["accessToken"])
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("UpstreamAccessDenied", "the rule's secret is not a JSON object with username and "
                                                        "accessToken", credentials=True) from None

    async def client(self, rule: Rule) -> UpstreamClient:
        """The rule's upstream client; with customRoleArn, its credentials come from the upstream's STS
        (AssumeRole with the secret's access key) and ECR (GetAuthorizationToken): upstream_role.py."""
        credentials = await self.credentials(rule)
        if rule.custom_role_arn is None:
            return UpstreamClient(rule.upstream_url, credentials, self.insecure)
        if credentials is None:
            raise UpstreamError("UpstreamAccessDenied", f"the role {rule.custom_role_arn} is assumed on the upstream "
                                "with the access key in the rule's secret, and the rule has no credentialArn",
                                credentials=True)
        client = UpstreamClient(rule.upstream_url, None, self.insecure)
        key, secret = credentials
        role = rule.custom_role_arn
        loop = asyncio.get_running_loop()
        try:
            base = await loop.run_in_executor(None, client.base)
            client.credentials = await loop.run_in_executor(
                None, lambda: registry_credentials(base, upstream_region(rule.upstream_url, rule.region), key,
                                                   secret, role))
        except BaseException:
            client.close()
            raise
        return client

    async def validate(self, account: str, region: str, prefix: str) -> tuple[Rule, str | None]:
        """The rule and why it cannot reach its upstream (None: it can)."""
        rule = (await self.describe(account, region, [prefix]))[0]
        try:
            client = await self.client(rule)
        except UpstreamError as e:
            return rule, e.message
        try:
            await asyncio.get_running_loop().run_in_executor(None, client.ping)
        except UpstreamError as e:
            return rule, e.message
        finally:
            client.close()
        return rule, None
